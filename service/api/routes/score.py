from typing import Any

from fastapi import APIRouter, Request

from service import operations, scoring
from service.api.deps import LimitsDep, RegistryDep, resolve_model
from service.api.schemas import ScoreRequest, ScoreResponse, error_responses
from service.families import Operation
from service.labels import label_names

router = APIRouter(tags=["likelihood"])


@router.post(
    "/score",
    response_model=ScoreResponse,
    response_model_exclude_none=True,
    responses=error_responses(404, 413, 422, 503),
)
async def score(
    body: ScoreRequest, request: Request, registry: RegistryDep, limits: LimitsDep
) -> Any:
    """Bits per dimension of each image (lower: more likely under the model): exact for PixelCNN
    and PixelRNN, the importance-weighted bound with `k` samples for a VAE (`kind` says which).
    An anomaly score: see docs/anomaly.md."""
    model = resolve_model(request, registry, body.model, Operation.SCORE)
    seed = body.seed if body.seed is not None else operations.new_seed()
    scores = await scoring.score(model, body.images, limits, seed, body.k, body.label)
    card = model.ready_card
    return ScoreResponse(
        model=model.name,
        version=card.version,
        kind=scores.kind,
        bits_per_dim=scores.bits_per_dim.tolist(),
        log_likelihood=scores.log_likelihood.tolist(),
        png_bits_per_dim=scores.png_bits_per_dim.tolist(),
        anomaly_score=(scores.bits_per_dim - scores.png_bits_per_dim).tolist(),
        k=scores.k,
        seed=scores.seed,
        labels=None if scores.labels is None else label_names(card, scores.labels),
    )

from typing import Any

from fastapi import APIRouter, Request

from service.api.running import Call, operation_route, running
from service.api.schemas import ScoreRequest, ScoreResponse
from service.generation.specs import ScoreSpec
from service.registry.families import Operation

router = APIRouter(tags=["likelihood"])


@operation_route(router, "/score", ScoreResponse, exclude_none=True)
async def score(body: ScoreRequest, request: Request) -> Any:
    """Bits per dimension of each image (lower: more likely under the model): exact for PixelCNN
    and PixelRNN, the importance-weighted bound with `k` samples for a VAE (`kind` says which).
    An anomaly score: see docs/anomaly.md."""
    spec = ScoreSpec(body.images, body.k, body.seed, body.label)
    async with running(Call.of(request), Operation.SCORE, body.model, body.timeout_ms) as run:
        result = await run.operations.score(run.model, spec)
    scores = result.payload
    return ScoreResponse(
        model=result.model,
        version=result.version,
        kind=scores.kind,
        bits_per_dim=scores.bits_per_dim.tolist(),
        log_likelihood=scores.log_likelihood.tolist(),
        png_bits_per_dim=scores.png_bits_per_dim.tolist(),
        anomaly_score=(scores.bits_per_dim - scores.png_bits_per_dim).tolist(),
        k=scores.k,
        seed=result.seed,
        labels=result.labels,
    )

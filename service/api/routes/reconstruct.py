from typing import Any

from fastapi import APIRouter, Request

from service import operations
from service.api.deps import LimitsDep, MetricsDep, RegistryDep, resolve_model
from service.api.schemas import ReconstructRequest, ReconstructResponse, error_responses
from service.families import Operation
from service.imaging import encode_images

router = APIRouter(tags=["latent"])


@router.post(
    "/reconstruct",
    response_model=ReconstructResponse,
    responses=error_responses(404, 413, 422, 503),
)
async def reconstruct(
    body: ReconstructRequest,
    request: Request,
    registry: RegistryDep,
    limits: LimitsDep,
    metrics: MetricsDep,
) -> Any:
    """Encode then decode (the encoder's mean, so it is deterministic); report the per-image
    mean squared error on [0, 1] pixels."""
    model = resolve_model(request, registry, body.model, Operation.RECONSTRUCT)

    images, error = await operations.reconstruct(
        model, body.images, limits, lambda recon: encode_images(recon, body.format), body.label
    )
    metrics.images.labels(model.name, Operation.RECONSTRUCT.value).inc(len(images))
    return ReconstructResponse(
        model=model.name, version=model.ready_card.version, images=images, error=error.tolist()
    )

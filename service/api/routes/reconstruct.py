from typing import Any

from fastapi import APIRouter, Request

from service.api.running import images_as, operation_route, run_request
from service.api.schemas import ReconstructRequest, ReconstructResponse
from service.generation.specs import ReconstructSpec
from service.registry.families import Operation

router = APIRouter(tags=["latent"])


@operation_route(router, "/reconstruct", ReconstructResponse)
async def reconstruct(body: ReconstructRequest, request: Request) -> Any:
    """Encode then decode (the encoder's mean, so it is deterministic); report the per-image
    mean squared error on [0, 1] pixels."""
    spec = ReconstructSpec(body.images, body.label)
    finish = images_as(body.format, body.scale)
    result = await run_request(request, Operation.RECONSTRUCT, body, spec, finish)
    return ReconstructResponse(
        model=result.model,
        version=result.version,
        images=result.payload,
        error=result.arrays["error"].tolist(),
    )

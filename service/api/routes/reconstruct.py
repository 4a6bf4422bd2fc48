from typing import Any

from fastapi import APIRouter, Request

from service.api.running import Call, operation_route, running
from service.api.schemas import ReconstructRequest, ReconstructResponse
from service.generation.imaging import images_as
from service.generation.specs import ReconstructSpec
from service.registry.families import Operation

router = APIRouter(tags=["latent"])


@operation_route(router, "/reconstruct", ReconstructResponse)
async def reconstruct(body: ReconstructRequest, request: Request) -> Any:
    """Encode then decode (the encoder's mean, so it is deterministic); report the per-image
    mean squared error on [0, 1] pixels."""
    spec = ReconstructSpec(body.images, body.label)
    finish = images_as(body.format, body.scale)
    call = Call.of(request)
    async with running(call, Operation.RECONSTRUCT, body.model, body.timeout_ms) as run:
        result = await run.operations.reconstruct(run.model, spec, finish)
    run.count(result)
    return ReconstructResponse(
        model=result.model,
        version=result.version,
        images=result.payload,
        error=result.arrays["error"].tolist(),
    )

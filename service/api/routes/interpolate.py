from typing import Any

from fastapi import APIRouter, Request

from service.api.running import Call, operation_route, running
from service.api.schemas import (
    InterpolateRequest,
    InterpolateResponse,
    InterpolationEnd,
)
from service.generation.imaging import images_as
from service.generation.specs import Endpoint, InterpolateSpec
from service.registry.families import Operation

router = APIRouter(tags=["latent"])


def _endpoint(end: InterpolationEnd) -> Endpoint:
    return Endpoint(image=end.image, latent=end.latent, seed=end.seed)


@operation_route(router, "/interpolate", InterpolateResponse)
async def interpolate(body: InterpolateRequest, request: Request) -> Any:
    """Walk the latent space from `start` to `end` in `steps` images (lerp or slerp). An end is
    an image (VAE, through its encoder), a latent vector, or a seed (row 0 of that seed's
    latents, i.e. the image /sample gives for n=1 and that seed)."""
    spec = InterpolateSpec(
        _endpoint(body.start), _endpoint(body.end), body.steps, body.method, body.label
    )
    finish = images_as(body.format, body.scale)
    call = Call.of(request)
    async with running(call, Operation.INTERPOLATE, body.model, body.timeout_ms) as run:
        result = await run.operations.interpolate(run.model, spec, finish)
    run.count(result)
    return InterpolateResponse(
        model=result.model,
        version=result.version,
        shape=list(result.shape),
        images=result.payload,
        latents=result.arrays["latents"].tolist(),
    )

from typing import Any

from fastapi import APIRouter, Request

from service.api.running import images_as, operation_route, run_request
from service.api.schemas import (
    InterpolateRequest,
    InterpolateResponse,
    InterpolationEnd,
)
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
    result = await run_request(request, Operation.INTERPOLATE, body, spec, finish)
    return InterpolateResponse(
        model=result.model,
        version=result.version,
        shape=list(result.shape),
        images=result.payload,
        latents=result.arrays["latents"].tolist(),
    )

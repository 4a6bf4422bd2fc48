from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from service import operations
from service.api.deps import MetricsDep, RegistryDep, resolve_model
from service.api.schemas import (
    InterpolateRequest,
    InterpolateResponse,
    InterpolationEnd,
    error_responses,
)
from service.families import Operation
from service.imaging import encode_images

router = APIRouter(tags=["latent"])


def _endpoint(end: InterpolationEnd) -> operations.Endpoint:
    return operations.Endpoint(image=end.image, latent=end.latent, seed=end.seed)


@router.post(
    "/interpolate",
    response_model=InterpolateResponse,
    responses=error_responses(404, 413, 422, 503),
)
async def interpolate(
    body: InterpolateRequest, request: Request, registry: RegistryDep, metrics: MetricsDep
) -> Any:
    """Walk the latent space from `start` to `end` in `steps` images (lerp or slerp). An end is
    an image (VAE, through its encoder), a latent vector, or a seed (row 0 of that seed's
    latents, i.e. the image /sample gives for n=1 and that seed)."""
    model = resolve_model(request, registry, body.model, Operation.INTERPOLATE)

    def finish(images: np.ndarray) -> tuple[list[int], list[Any]]:
        return list(images.shape), encode_images(images, body.format)

    (shape, images), z = await operations.interpolate(
        model,
        _endpoint(body.start),
        _endpoint(body.end),
        body.steps,
        body.method,
        finish,
        body.label,
    )
    metrics.images.labels(model.name, Operation.INTERPOLATE.value).inc(len(images))
    return InterpolateResponse(
        model=model.name,
        version=model.ready_card.version,
        shape=shape,
        images=images,
        latents=z.tolist(),
    )

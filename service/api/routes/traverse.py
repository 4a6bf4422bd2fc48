from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from service import operations
from service.api.content import wants_png
from service.api.deps import MetricsDep, RegistryDep, resolve_model
from service.api.schemas import TraverseRequest, TraverseResponse, error_responses
from service.families import Operation
from service.imaging import encode_images, grid_png
from service.labels import class_names

router = APIRouter(tags=["latent"])

_PNG_STRIP = {
    "description": "With `Accept: image/png`: one PNG, the images side by side; the model, "
    "version and seed (if any) come in the X-Model, X-Model-Version and X-Seed headers.",
    "content": {"image/png": {}},
}


@router.post(
    "/traverse",
    response_model=TraverseResponse,
    response_model_exclude_none=True,
    responses={200: _PNG_STRIP, **error_responses(404, 413, 422, 503)},
)
async def traverse(
    body: TraverseRequest, request: Request, registry: RegistryDep, metrics: MetricsDep
) -> Any:
    """Vary latent dimension `dim` of a VAE (or CVAE) over `range` in `steps` images, the other
    dimensions held at a base latent: a seed's prior draw, an image's posterior mean, or a
    given latent."""
    model = resolve_model(request, registry, body.model, Operation.TRAVERSE)
    seed = body.seed
    if body.image is None and body.latent is None and seed is None:
        seed = operations.new_seed()
    as_strip = wants_png(request)

    def finish(images: np.ndarray) -> tuple[list[int], Any]:
        strip = grid_png(images, columns=len(images)) if as_strip else None
        return list(images.shape), strip if strip is not None else encode_images(
            images, body.format
        )

    base = operations.Endpoint(image=body.image, latent=body.latent, seed=seed)
    result = await operations.traverse(
        model, base, body.dim, body.range, body.steps, finish, body.label
    )
    shape, payload = result.images
    metrics.images.labels(model.name, Operation.TRAVERSE.value).inc(body.steps)
    card = model.ready_card
    label = None if result.label is None else class_names(card)[result.label]
    if as_strip:
        headers = {"X-Model": model.name, "X-Model-Version": str(card.version)}
        if seed is not None:
            headers["X-Seed"] = str(seed)
        return Response(payload, media_type="image/png", headers=headers)
    return TraverseResponse(
        model=model.name,
        version=card.version,
        seed=seed,
        dim=body.dim,
        values=result.values.tolist(),
        label=label,
        shape=shape,
        images=payload,
        latents=result.latents.tolist(),
    )

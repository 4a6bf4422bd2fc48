from typing import Any

from fastapi import APIRouter, Request, Response

from service.api.content import check_columns, wants_png
from service.api.running import Call, operation_route, running
from service.api.schemas import TraverseRequest, TraverseResponse
from service.generation.imaging import grid_of, images_as
from service.generation.specs import Endpoint, TraverseSpec
from service.registry.families import Operation

router = APIRouter(tags=["latent"])

_PNG_STRIP = {
    "description": "With `Accept: image/png`: one PNG, the images side by side (`columns` to a "
    "row, when given); the model, "
    "version and seed (if any) come in the X-Model, X-Model-Version and X-Seed headers.",
    "content": {"image/png": {}},
}


@operation_route(router, "/traverse", TraverseResponse, exclude_none=True, other_media=_PNG_STRIP)
async def traverse(body: TraverseRequest, request: Request) -> Any:
    """Vary latent dimension `dim` of a VAE (or CVAE) over `range` in `steps` images, the other
    dimensions held at a base latent: a seed's prior draw, an image's posterior mean, or a
    given latent."""
    as_strip = wants_png(request.scope)
    check_columns(body.columns, as_strip)
    base = Endpoint(image=body.image, latent=body.latent, seed=body.seed)
    spec = TraverseSpec(base, body.dim, body.range, body.steps, body.label)
    columns = body.columns or body.steps  # one row, unless asked otherwise
    finish = grid_of(columns, body.scale) if as_strip else images_as(body.format, body.scale)
    async with running(Call.of(request), Operation.TRAVERSE, body.model, body.timeout_ms) as run:
        result = await run.operations.traverse(run.model, spec, finish)
    run.count(result)
    if as_strip:
        headers = {"X-Model": result.model, "X-Model-Version": str(result.version)}
        if result.seed is not None:
            headers["X-Seed"] = str(result.seed)
        return Response(result.payload, media_type="image/png", headers=headers)
    return TraverseResponse(
        model=result.model,
        version=result.version,
        seed=result.seed,
        dim=body.dim,
        values=result.arrays["values"].tolist(),
        label=result.labels[0] if result.labels else None,
        shape=list(result.shape),
        images=result.payload,
        latents=result.arrays["latents"].tolist(),
    )

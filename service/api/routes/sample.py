from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from service import operations
from service.api.deps import LimitsDep, MetricsDep, RegistryDep, resolve_model
from service.api.schemas import SampleRequest, SampleResponse, error_responses
from service.families import Operation
from service.imaging import encode_images, grid_png

router = APIRouter(tags=["generate"])

_PNG_GRID = {
    "description": "With `Accept: image/png`: one PNG grid of all images; the seed, model and "
    "version come in the X-Seed, X-Model and X-Model-Version headers.",
    "content": {"image/png": {}},
}


@router.post(
    "/sample",
    response_model=SampleResponse,
    responses={200: _PNG_GRID, **error_responses(404, 413, 422, 503)},
)
async def sample(
    request: Request,
    registry: RegistryDep,
    limits: LimitsDep,
    metrics: MetricsDep,
    body: SampleRequest | None = None,
) -> Any:
    """Draw `n` images. The seed used is always echoed, so every sample can be reproduced:
    image i of seed s is the same whatever `n` is."""
    body = body or SampleRequest()
    model = resolve_model(request, registry, body.model, Operation.SAMPLE)
    seed = body.seed if body.seed is not None else operations.new_seed()
    as_grid = "image/png" in request.headers.get("accept", "")

    def work() -> tuple[list[int], Any]:
        images = operations.sample(model, body.n, seed, limits, body.temperature, body.truncation)
        payload = grid_png(images) if as_grid else encode_images(images, body.format)
        return list(images.shape), payload

    family = model.family
    if family is not None and family.autoregressive:  # 784 runs that each use every core
        limiter = request.app.state.autoregressive_limiter
        shape, payload = await anyio.to_thread.run_sync(work, limiter=limiter)
    else:
        shape, payload = await run_in_threadpool(work)
    metrics.images.labels(model.name, Operation.SAMPLE.value).inc(body.n)
    version = model.ready_card.version
    if as_grid:
        headers = {"X-Seed": str(seed), "X-Model": model.name, "X-Model-Version": str(version)}
        return Response(payload, media_type="image/png", headers=headers)
    return SampleResponse(model=model.name, version=version, seed=seed, shape=shape, images=payload)

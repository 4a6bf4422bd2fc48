from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from service import completion, operations
from service.api.deps import LimitsDep, MetricsDep, RegistryDep, resolve_model
from service.api.schemas import CompleteRequest, CompleteResponse, error_responses
from service.families import Operation
from service.imaging import encode_images

router = APIRouter(tags=["generate"])


@router.post(
    "/complete",
    response_model=CompleteResponse,
    responses=error_responses(404, 413, 422, 503),
)
async def complete(
    body: CompleteRequest,
    request: Request,
    registry: RegistryDep,
    limits: LimitsDep,
    metrics: MetricsDep,
) -> Any:
    """Complete images with an autoregressive model (PixelCNN, PixelRNN): keep the top `rows`,
    or the pixels a `mask` marks 1, exactly, and draw the rest pixel by pixel. Completion i of
    every image uses seed + i, so each one can be drawn again alone (`seeds`)."""
    model = resolve_model(request, registry, body.model, Operation.COMPLETE)
    seed = body.seed if body.seed is not None else operations.new_seed()

    def finish(images: np.ndarray) -> tuple[list[int], list[Any]]:
        return list(images.shape), encode_images(images, body.format)

    (shape, images) = await completion.complete(
        model,
        body.images,
        completion.Given(body.rows, body.mask),
        body.samples,
        seed,
        limits,
        body.temperature,
        finish,
        request.app.state.autoregressive_limiter,
    )
    metrics.images.labels(model.name, Operation.COMPLETE.value).inc(len(images))
    s = body.samples
    return CompleteResponse(
        model=model.name,
        version=model.ready_card.version,
        seeds=completion.completion_seeds(seed, s),
        shape=[len(body.images), s, *shape[1:]],
        images=[images[i : i + s] for i in range(0, len(images), s)],
    )

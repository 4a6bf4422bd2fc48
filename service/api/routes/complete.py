from typing import Any

from fastapi import APIRouter, Request

from service.api.running import Call, images_as, operation_route, run_operation
from service.api.schemas import CompleteRequest, CompleteResponse
from service.generation.completion import completion_seeds
from service.generation.specs import CompleteSpec, Given
from service.registry.families import Operation

router = APIRouter(tags=["generate"])


@operation_route(router, "/complete", CompleteResponse)
async def complete(body: CompleteRequest, request: Request) -> Any:
    """Complete images with an autoregressive model (PixelCNN, PixelRNN): keep the top `rows`,
    or the pixels a `mask` marks 1, exactly, and draw the rest pixel by pixel. Completion i of
    every image uses seed + i, so each one can be drawn again alone (`seeds`)."""
    spec = CompleteSpec(
        body.images, Given(body.rows, body.mask), body.samples, body.seed, body.temperature
    )
    result = await run_operation(
        Call.of(request), Operation.COMPLETE, body.model, spec, images_as(body.format, body.scale)
    )
    s, images = body.samples, result.payload
    assert result.seed is not None
    return CompleteResponse(
        model=result.model,
        version=result.version,
        seeds=completion_seeds(result.seed, s),
        shape=[len(body.images), s, *result.shape[1:]],
        images=[images[i : i + s] for i in range(0, len(images), s)],
    )

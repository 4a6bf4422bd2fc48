from typing import Any

from fastapi import APIRouter, Request

from service.api.content import wants_event_stream
from service.api.running import Answer, Call, operation_route, running
from service.api.schemas import CompleteRequest, CompleteResponse
from service.api.streaming import OPENAPI_CONTENT, STREAM_DESCRIPTION, stream
from service.generation.autoregressive import RowWatch
from service.generation.completion import completion_seeds
from service.generation.imaging import images_as
from service.generation.specs import CompleteSpec, Given
from service.registry.families import Operation

router = APIRouter(tags=["generate"])

_EVENTS = {"description": "The completions." + STREAM_DESCRIPTION, "content": OPENAPI_CONTENT}


@operation_route(router, "/complete", CompleteResponse, other_media=_EVENTS)
async def complete(body: CompleteRequest, request: Request) -> Any:
    """Complete images with an autoregressive model (PixelCNN, PixelRNN): keep the top `rows`,
    or the pixels a `mask` marks 1, exactly, and draw the rest pixel by pixel. Completion i of
    every image uses seed + i, so each one can be drawn again alone (`seeds`)."""
    call = Call.of(request)
    if wants_event_stream(request.scope):
        return await stream(call, lambda watch: answer(call, body, watch))
    return (await answer(call, body)).response()


async def answer(call: Call, body: CompleteRequest, watch: RowWatch | None = None) -> Answer:
    """The route's answer, which the event stream sends too."""
    spec = CompleteSpec(
        body.images, Given(body.rows, body.mask), body.samples, body.seed, body.temperature
    )
    finish = images_as(body.format, body.scale)
    async with running(call, Operation.COMPLETE, body.model, body.timeout_ms, watch) as run:
        result = await run.operations.complete(run.model, spec, finish, run.watch)
    run.count(result)
    s, images = body.samples, result.payload
    assert result.seed is not None
    response = CompleteResponse.model_construct(
        model=result.model,
        version=result.version,
        seeds=completion_seeds(result.seed, s),
        shape=[len(body.images), s, *result.shape[1:]],
        images=[images[i : i + s] for i in range(0, len(images), s)],
    )
    return Answer(response.model_dump_json().encode(), "application/json")

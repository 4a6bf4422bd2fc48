from typing import Any

from fastapi import APIRouter, Request

from service.api.content import wants_event_stream, wants_png
from service.api.running import (
    Answer,
    Call,
    check_columns,
    grid_of,
    images_as,
    operation_route,
    run_operation,
)
from service.api.schemas import SampleRequest, SampleResponse
from service.api.streaming import OPENAPI_CONTENT, STREAM_DESCRIPTION, stream
from service.generation.autoregressive import RowWatch
from service.generation.specs import SampleSpec
from service.registry.families import Operation

router = APIRouter(tags=["generate"])

_OTHER_MEDIA = {
    "description": "With `Accept: image/png`: one PNG grid of all images; the seed, model and "
    "version come in the X-Seed, X-Model and X-Model-Version headers, a conditional model's "
    "classes in X-Labels (comma-separated)." + STREAM_DESCRIPTION,
    "content": {"image/png": {}, **OPENAPI_CONTENT},
}


@operation_route(router, "/sample", SampleResponse, other_media=_OTHER_MEDIA)
async def sample(request: Request, body: SampleRequest | None = None) -> Any:
    """Draw `n` images. The seed used is always echoed, so every sample can be reproduced:
    image i of seed s is the same whatever `n` is. A conditional model (cvae) draws the class
    `label`, or each image's class from the seed; the response lists them."""
    call, body = Call.of(request), body or SampleRequest()
    if wants_event_stream(request.scope):
        return await stream(call, lambda watch: answer(call, body, watch))
    return (await answer(call, body)).response()


async def answer(call: Call, body: SampleRequest, watch: RowWatch | None = None) -> Answer:
    """The route's answer, which the fast lane and the event stream send too."""
    as_grid = wants_png(call.scope)
    check_columns(body.columns, as_grid)
    spec = SampleSpec(body.n, body.seed, body.temperature, body.truncation, body.label)
    finish = grid_of(body.columns, body.scale) if as_grid else images_as(body.format, body.scale)
    result = await run_operation(
        call, Operation.SAMPLE, body.model, spec, finish, body.timeout_ms, watch
    )
    assert result.seed is not None  # a sample always has one
    if as_grid:
        headers = {
            "X-Seed": str(result.seed),
            "X-Model": result.model,
            "X-Model-Version": str(result.version),
        }
        if result.labels is not None:
            headers["X-Labels"] = ",".join(result.labels)
        return Answer(result.payload, "image/png", headers)
    response = SampleResponse.model_construct(
        model=result.model,
        version=result.version,
        seed=result.seed,
        shape=list(result.shape),
        images=result.payload,
        labels=result.labels,
    )
    return Answer(response.model_dump_json(exclude_none=True).encode(), "application/json")

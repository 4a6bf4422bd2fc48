from typing import Any

from fastapi import APIRouter, Request

from service.api.answers import sample_answer
from service.api.content import wants_event_stream
from service.api.running import Call, operation_route
from service.api.schemas import SampleRequest, SampleResponse
from service.api.streaming import OPENAPI_CONTENT, STREAM_DESCRIPTION, stream

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
        return await stream(call, lambda watch: sample_answer(call, body, watch))
    return (await sample_answer(call, body)).response()

"""The hot path: ``POST /sample`` and ``POST /v2/models/{m}/infer`` answered without FastAPI's
routing, dependency solving and response validation, which cost more than the model at one
image per request (docs/performance.md). Only a request FastAPI would take as it is goes this
way: a JSON body that validates. Anything else (another route, another content type, a body
that does not parse or validate, an event stream) goes on to FastAPI with its body, and
FastAPI answers it as it always has, so the validation rules, the error bodies and the OpenAPI
schema stay FastAPI's.
Both ways call the same answer (``api/answers``: ``sample_answer``, ``infer_answer``), and share
the one error table (``api/errors.response_for``)."""

from __future__ import annotations

import json

from pydantic import ValidationError
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.answers import infer_answer, sample_answer
from service.api.content import header, wants_event_stream
from service.api.errors import response_for
from service.api.middleware import replay
from service.api.running import Answer, Call
from service.api.schemas import SampleRequest
from service.errors import ServiceError

_V2_MODELS = "/v2/models/"
_JSON = b"application/json"
"""The one content type the lane takes (FastAPI reads a body without one as bytes)."""


class FastLane:
    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/sample" and not wants_event_stream(scope):  # FastAPI's route streams
            await self._sample(scope, receive, send)
        elif path.startswith(_V2_MODELS) and path.endswith("/infer"):
            await self._infer(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _sample(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read(receive)
        request = None
        if header(scope, b"content-type").split(b";")[0].strip() == _JSON and body:
            try:
                data = json.loads(body)
                if isinstance(data, dict):  # as FastAPI validates a body, from the parsed JSON
                    request = SampleRequest.model_validate(data)
            except (ValueError, ValidationError):
                pass
        if request is None:  # FastAPI says what is wrong, as it always has
            await self.app(scope, replay(body, receive), send)
            return
        call = Call(self.state, scope)
        await self._answer(scope, receive, send, sample_answer(call, request))

    async def _infer(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope["path"][len(_V2_MODELS) : -len("/infer")].split("/")
        if len(parts) == 1 and parts[0]:
            name, version = parts[0], None
        elif len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
            name, version = parts[0], parts[2]
        else:
            await self.app(scope, receive, send)
            return
        body = await _read(receive)
        call = Call(self.state, scope)
        await self._answer(scope, receive, send, infer_answer(call, name, version, body))

    async def _answer(self, scope: Scope, receive: Receive, send: Send, answer: object) -> None:
        try:
            done: Answer = await answer  # type: ignore[misc]
        except ServiceError as exc:
            await response_for(scope["method"], scope["path"], exc)(scope, receive, send)
            return
        headers = [
            (b"content-length", b"%d" % len(done.content)),
            (b"content-type", done.media_type.encode()),
            *((k.lower().encode(), v.encode("latin-1")) for k, v in done.headers.items()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": done.content})


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)

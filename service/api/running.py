"""What every operation's route does around the operation it calls (``running``: resolve the
model and label the request's metrics with it, the deadline, the images counted), the routes'
shared pieces, and the ``Answer`` that a FastAPI route and the fast lane (``api/fastlane.py``)
send alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import State
from starlette.types import Scope

from service.api.content import header
from service.api.schemas import error_responses
from service.errors import DeadlineExceeded, InvalidInput
from service.generation.autoregressive import RowWatch
from service.generation.operations import Operations
from service.generation.specs import Result
from service.metrics import Metrics
from service.registry.families import Operation
from service.registry.registry import LoadedModel
from service.runtime.batching import REQUEST_CLASS, RequestClass

CLASS_HEADER = "X-Request-Class"
"""A request's class, ``interactive`` or ``bulk``, when it says it (docs/api.md)."""
_CLASS_HEADER = CLASS_HEADER.lower().encode()
_CLASSES = {c.value.encode(): c for c in RequestClass}

ERRORS = error_responses(404, 413, 422, 503, 504)
"""What every operation can answer besides a 200."""

CLASS_PARAMETER = {
    "name": CLASS_HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "enum": [c.value for c in RequestClass]},
    "description": "The request's class: interactive requests run first, bulk ones in pieces "
    "with a guaranteed share. Without it, the API key's class, else the size decides "
    "(SERVICE_INTERACTIVE_MAX_IMAGES). Another value is a 422 (400 under /v2).",
}
"""The header in every operation's OpenAPI parameters (it is read from the scope, so FastAPI
does not list it by itself)."""


def operation_route(
    router: APIRouter,
    path: str,
    response_model: Any,
    exclude_none: bool = False,
    other_media: dict[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``POST path`` for an operation, with its errors in OpenAPI; ``other_media`` documents
    what a request gets instead of JSON by its Accept header (a PNG, an event stream)."""
    return router.post(
        path,
        response_model=response_model,
        response_model_exclude_none=exclude_none,
        responses={200: other_media, **ERRORS} if other_media else ERRORS,
        openapi_extra={"parameters": [CLASS_PARAMETER]},
    )


@dataclass(frozen=True)
class Call:
    """What an operation's answer needs of its request: the app's state, and the request's
    scope (its headers, and the state where the request's metrics find the model's name)."""

    app: State
    scope: Scope

    @classmethod
    def of(cls, request: Request) -> Call:
        return cls(request.app.state, request.scope)


@dataclass(frozen=True)
class Answer:
    content: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        return Response(self.content, media_type=self.media_type, headers=self.headers)


class Running:
    """One operation's run, as an ``async with`` block around the call: past ``timeout_ms`` the
    work inside stops (DeadlineExceeded), and a request cancelled (its client went away) stops
    it too; either way it is counted, with the rows drawn for nothing. ``count`` counts the
    images the operation made. ``running`` makes one for a route's request; the v2 answer makes
    its own, on the v2 model its path names."""

    __slots__ = (
        "model", "operations", "watch", "_metrics", "_operation", "_timeout_ms", "_timer",
        "_class", "_class_token",
    )  # fmt: skip

    def __init__(
        self,
        app: State,
        model: LoadedModel,
        operation: str,
        timeout_ms: float | None,
        watch: RowWatch | None = None,
        request_class: RequestClass | None = None,
    ) -> None:
        self.model = model
        self.operations: Operations = app.operations
        self.watch = watch or RowWatch()
        self._metrics: Metrics = app.metrics
        self._operation, self._timeout_ms = operation, timeout_ms
        self._timer = asyncio.timeout(timeout_ms / 1000 if timeout_ms else None)
        self._class = request_class
        self._class_token: Token[RequestClass | None] | None = None

    async def __aenter__(self) -> Running:
        await self._timer.__aenter__()
        if self._class is not None:  # every graph the operation runs queues it in this class
            self._class_token = REQUEST_CLASS.set(self._class)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        rows = self.watch.rows_done
        if self._class_token is not None:
            REQUEST_CLASS.reset(self._class_token)
        try:
            await self._timer.__aexit__(exc_type, exc, traceback)
        except TimeoutError:
            self._metrics.stopped(self.model.name, self._operation, "deadline", rows)
            raise DeadlineExceeded(
                f"{self._operation}: not done within {self._timeout_ms:g} ms; its work was stopped"
            ) from None
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            self._metrics.stopped(self.model.name, self._operation, "disconnect", rows)

    def count(self, result: Result[Any]) -> None:
        """Count the images ``result`` holds, by model and operation."""
        if result.count:
            self._metrics.images.labels(self.model.name, self._operation).inc(result.count)


def running(
    call: Call,
    operation: Operation,
    model: str | None,
    timeout_ms: int | None = None,
    watch: RowWatch | None = None,
) -> Running:
    """What every operation's route does around the operation it calls: resolve the model the
    request names (or the operation's default), label the request's metrics with it, and run
    the call within the request's deadline.

        async with running(call, Operation.SAMPLE, body.model, body.timeout_ms) as run:
            result = await run.operations.sample(run.model, spec, finish, run.watch)
        run.count(result)
    """
    klass = request_class(call)
    resolved = call.app.registry.resolve(model, operation)
    call.scope.setdefault("state", {})["model"] = resolved.name
    return Running(call.app, resolved, operation.value, timeout_ms, watch, klass)


def request_class(call: Call) -> RequestClass | None:
    """The class a request says it is (its X-Request-Class header), else its API key's default;
    None: its size decides (SERVICE_INTERACTIVE_MAX_IMAGES). InvalidInput for another value."""
    stated = header(call.scope, _CLASS_HEADER)
    if stated:
        klass = _CLASSES.get(stated.strip().lower())
        if klass is None:
            raise InvalidInput(
                f"{CLASS_HEADER}: {stated.decode('latin-1')!r} is not a request class; "
                "choose interactive or bulk"
            )
        return klass
    key = call.scope.get("state", {}).get("api_key")
    return call.app.config.key_classes.get(key) if key else None

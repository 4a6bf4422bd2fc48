"""What every operation's route does around the operation it calls (``running``: resolve the
model and label the request's metrics with it, the deadline, the images counted), the routes'
shared pieces, and the ``Answer`` that a FastAPI route and the fast lane (``api/fastlane.py``)
send alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import State
from starlette.types import Scope

from service.api.schemas import error_responses
from service.errors import DeadlineExceeded, InvalidInput
from service.generation.autoregressive import RowWatch
from service.generation.imaging import ImageFormat, encode_images, grid_png
from service.generation.operations import ImageFinish, Operations
from service.generation.specs import Result
from service.metrics import Metrics
from service.registry.families import Operation
from service.registry.registry import LoadedModel

ERRORS = error_responses(404, 413, 422, 503, 504)
"""What every operation can answer besides a 200."""


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
    )


def images_as(fmt: ImageFormat, scale: int = 1) -> ImageFinish:
    """Base64 PNGs (``scale`` times larger), or nested float lists: a request's ``format``."""
    return lambda images: encode_images(images, fmt, scale)


def grid_of(columns: int | None, scale: int) -> ImageFinish:
    """One PNG of every image, tiled ``columns`` to a row (default: about square)."""
    return lambda images: grid_png(images, columns=columns, scale=scale)


def check_columns(columns: int | None, as_grid: bool) -> None:
    if columns is not None and not as_grid:
        raise InvalidInput("columns: applies to a PNG grid, asked for with 'Accept: image/png'")


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


@asynccontextmanager
async def stopped_when(
    metrics: Metrics, model: str, operation: str, timeout_ms: float | None, watch: RowWatch
) -> AsyncIterator[None]:
    """The work inside stops past ``timeout_ms`` (DeadlineExceeded), or when the request is
    cancelled (its client went away); either way it is counted, with the rows drawn."""
    try:
        async with asyncio.timeout(timeout_ms / 1000 if timeout_ms else None):
            yield
    except TimeoutError:
        metrics.stopped(model, operation, "deadline", watch.rows_done)
        raise DeadlineExceeded(
            f"{operation}: not done within {timeout_ms:g} ms; its work was stopped"
        ) from None
    except asyncio.CancelledError:
        metrics.stopped(model, operation, "disconnect", watch.rows_done)
        raise


@dataclass(frozen=True, slots=True)
class Running:
    """One request's operation, inside ``running``: the model it resolved to, the operations to
    call on it, and the watch a pixel-by-pixel drawing reports its rows to."""

    model: LoadedModel
    operations: Operations
    watch: RowWatch
    metrics: Metrics
    operation: Operation

    def count(self, result: Result[Any]) -> None:
        """Count the images ``result`` holds, by model and operation."""
        if result.count:
            self.metrics.images.labels(self.model.name, self.operation.value).inc(result.count)


@asynccontextmanager
async def running(
    call: Call,
    operation: Operation,
    model: str | None,
    timeout_ms: int | None = None,
    watch: RowWatch | None = None,
) -> AsyncIterator[Running]:
    """What every operation's route does around the operation it calls: resolve the model the
    request names (or the operation's default) and label the request's metrics with it; past
    ``timeout_ms``, the work inside stops and DeadlineExceeded says so; a request cancelled (its
    client went away) stops it too, and both are counted, with the rows drawn for nothing.

        async with running(call, Operation.SAMPLE, body.model, body.timeout_ms) as run:
            result = await run.operations.sample(run.model, spec, finish, run.watch)
        run.count(result)
    """
    app = call.app
    resolved = app.registry.resolve(model, operation)
    call.scope.setdefault("state", {})["model"] = resolved.name
    watch = watch or RowWatch()
    async with stopped_when(app.metrics, resolved.name, operation.value, timeout_ms, watch):
        yield Running(resolved, app.operations, watch, app.metrics, operation)

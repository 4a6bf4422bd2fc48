"""Server-sent events (``Accept: text/event-stream``) for /sample and /complete: a pixel-by-pixel
sampling streams ``progress`` after every row, ``partial`` (every image's canvas as PNG) every
SERVICE_STREAM_PARTIAL_ROWS rows, then ``result`` (the very body the plain call answers) or
``error`` (its usual ``{"error", "code"}``). Other families answer with the ``result`` event
alone. An error found before any drawing (a bad request, an unknown model) is answered as the
plain call answers it, with its status. The stream starts as soon as the request is checked,
before it waits for a slot; closing it stops the drawing at the end of the row."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from service.api.errors import response_for
from service.api.running import Answer, Call
from service.errors import ServiceError
from service.generation.autoregressive import RowWatch
from service.generation.imaging import encode_images

log = logging.getLogger(__name__)

MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""No caching, and no buffering by a proxy (nginx honours X-Accel-Buffering)."""

OPENAPI_CONTENT: dict[str, Any] = {
    MEDIA_TYPE: {
        "schema": {"type": "string"},
        "example": (
            'event: progress\ndata: {"rows_done":0,"rows":28,"elapsed_s":0.001,"eta_s":null}\n\n'
            'event: progress\ndata: {"rows_done":4,"rows":28,"elapsed_s":0.21,"eta_s":1.2}\n\n'
            'event: partial\ndata: {"rows_done":4,"images":["iVBORw0KGgo..."]}\n\n'
            'event: result\ndata: {"model":"pixelcnn-fashion","version":2,...}\n\n'
        ),
    }
}
STREAM_DESCRIPTION = (
    " With `Accept: text/event-stream`: server-sent events. PixelCNN and PixelRNN send "
    "`progress` after every row (`rows_done`, `rows`, `elapsed_s`, `eta_s`), `partial` every "
    "few rows (`rows_done` and every image's canvas as a base64 PNG), then `result` (the JSON "
    'body of the plain call) or `error` (`{"error", "code"}`); other families send `result` '
    "alone. Closing the stream stops the drawing."
)

AnswerWatched = Callable[[RowWatch], Awaitable[Answer]]


def event(name: str, data: bytes) -> bytes:
    """One server-sent event; ``data`` is one line of JSON."""
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _json(content: dict[str, Any]) -> bytes:
    return json.dumps(content, separators=(",", ":")).encode()


class EventStream(StreamingResponse):
    """A stream of events whose work is cancelled when the stream ends, however it ends."""

    def __init__(self, events: AsyncIterator[bytes], work: asyncio.Future[Any]) -> None:
        super().__init__(events, media_type=MEDIA_TYPE, headers=HEADERS)
        self.work = work

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await _stop(self.work)


async def _stop(work: asyncio.Future[Any]) -> None:
    if not work.done():
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work


async def stream(call: Call, answer: AnswerWatched) -> StreamingResponse:
    """The answer of ``answer`` as server-sent events, with its progress on the way."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    partial_rows: int = call.app.settings.stream_partial_rows
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    accepted = asyncio.Event()

    def progress(done: int, rows: int | None) -> bytes:
        now = time.perf_counter()
        eta = None
        if done and rows is not None and watch.drawing_since is not None:
            eta = round((now - watch.drawing_since) / done * (rows - done), 3)
        content = {"rows_done": done, "rows": rows, "elapsed_s": round(now - started, 3)}
        return event("progress", _json({**content, "eta_s": eta}))

    def on_row(done: int, rows: int, canvas: np.ndarray) -> None:  # in the sampling thread
        events = [progress(done, rows)]
        if done % partial_rows == 0 and done < rows:
            images = encode_images(canvas, "png")
            events.append(event("partial", _json({"rows_done": done, "images": images})))
        for item in events:
            loop.call_soon_threadsafe(queue.put_nowait, item)

    watch = RowWatch(on_row=on_row, on_accept=lambda rows: accepted.set())
    work: asyncio.Future[Answer] = asyncio.ensure_future(answer(watch))
    checked: asyncio.Future[Any] = asyncio.ensure_future(accepted.wait())
    try:
        await asyncio.wait((work, checked), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        await _stop(work)
        raise
    finally:
        checked.cancel()
    if not accepted.is_set():  # no drawing row by row: an error answered as usual, or a result
        done = work.result()
        return EventStream(_one(event("result", done.content)), work)
    path = call.scope["path"]

    async def events() -> AsyncIterator[bytes]:
        yield progress(0, watch.rows)
        while True:
            item: asyncio.Future[Any] = asyncio.ensure_future(queue.get())
            await asyncio.wait((item, work), return_when=asyncio.FIRST_COMPLETED)
            if not item.done():
                item.cancel()
                break
            yield item.result()
        while not queue.empty():  # the rows posted before the work ended
            yield queue.get_nowait()
        yield _last_event(work, path)

    return EventStream(events(), work)


def _last_event(work: asyncio.Future[Answer], path: str) -> bytes:
    try:
        return event("result", work.result().content)
    except ServiceError as exc:
        return event("error", bytes(response_for("POST", path, exc).body))
    except Exception:
        log.exception("POST %s: the streamed work failed", path)
        return event("error", bytes(response_for("POST", path, ServiceError("internal")).body))


async def _one(item: bytes) -> AsyncIterator[bytes]:
    yield item

"""Small ASGI middlewares: request metrics, and the request body (its size limit, and the
cancellation of a POST whose client left)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_content_for
from service.metrics import Metrics

_OPERATIONS = {
    "sample", "encode", "reconstruct", "interpolate", "score", "complete", "traverse", "models",
    "health", "metrics", "v2", "admin",
}  # fmt: skip


def operation_label(path: str) -> str:
    head = path.strip("/").split("/", 1)[0]
    return head if head in _OPERATIONS else "other"


class MetricsMiddleware:
    """Times every HTTP request; routes put the resolved model name in ``request.state.model``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics
        self.durations: dict[tuple[str, str, int], Any] = {}
        """The histogram's child per (model, operation, status), looked up once."""

    def duration(self, model: str, path: str, status: int) -> Any:
        key = (model, operation_label(path), status)
        child = self.durations.get(key)
        if child is None:
            child = self.durations[key] = self.metrics.request_duration.labels(
                key[0], key[1], str(status)
            )
        return child

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None
        state = scope.setdefault("state", {})

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note_status)
        except Exception:
            status = 500  # Starlette answers it with our error handler's 500
            raise
        finally:
            self.metrics.in_flight.dec()
            if status is not None:  # None: the client left before any response was started
                child = self.duration(state.get("model", ""), scope["path"], status)
                child.observe(time.perf_counter() - start)


def replay(body: bytes, then: Receive) -> Receive:
    """``receive`` for the app behind a reader of the request: the whole ``body`` it read, in one
    message, and after it what ``then`` receives."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await then()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class RequestBodyMiddleware:
    """Reads a request's body and replays it to the app. A body over ``max_bytes`` is refused
    with a 413: by Content-Length when the client declares one, and by counting the bytes as
    they arrive. Past the body, a POST is watched: if its client disconnects before the
    response is complete, the app's work is cancelled, since Starlette does not cancel a
    handler whose client left. The work's own ``except CancelledError`` (``running.Running``)
    then stops what it started, and counts it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, scope["path"])
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, scope["path"])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if scope["method"] == "POST":
            await self._watched(scope, body, receive, send)
            return
        await self.app(scope, replay(body, receive), send)

    async def _watched(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        complete = client_left = False
        listener = asyncio.ensure_future(receive())  # after the body, only a disconnect comes

        def heard(message: asyncio.Future[Message]) -> None:
            nonlocal client_left
            if complete or message.cancelled() or message.exception() is not None:
                return
            if message.result()["type"] == "http.disconnect":
                client_left = True
                task.cancel()

        listener.add_done_callback(heard)

        async def send_until_complete(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True  # before the server can report the end as a disconnect
            await send(message)

        async def disconnect() -> Message:  # the app listens for it too (a streaming response)
            return await asyncio.shield(listener)

        try:
            await self.app(scope, replay(body, disconnect), send_until_complete)
        except asyncio.CancelledError:
            if client_left and task.uncancel() == 0:
                return  # nobody is left to answer
            raise
        finally:
            complete = True
            listener.cancel()

    async def _refuse(self, send: Send, path: str) -> None:
        message = f"request body exceeds the limit of {self.max_bytes} bytes"
        body = json.dumps(error_content_for(path, message, "payload_too_large")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

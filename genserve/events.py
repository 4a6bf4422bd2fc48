"""Server-sent events for both clients, without I/O: lines to events (``EventDecoder``, as the
HTML standard reads them), and a stream's events to ``Progress``, ``Partial``, then its result
or its error (``EventReader``). ``Stream`` and ``AsyncStream`` feed in the lines they read."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

import httpx

from genserve.errors import (
    ConnectionFailed,
    GenserveError,
    ServerError,
    TimedOut,
    error_from_event,
    parse_answer,
    transport_failure,
)
from genserve.results import Partial, Progress

T = TypeVar("T")
R = TypeVar("R")
EVENT_STREAM = "text/event-stream"
StreamEvent: TypeAlias = Progress | Partial
"""What iterating over a stream gives."""


def is_event_stream(response: httpx.Response) -> bool:
    """A 200 whose body is server-sent events (anything else is read whole)."""
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return response.status_code == 200 and media_type == EVENT_STREAM


@dataclass(frozen=True)
class ServerEvent:
    """``name``: the ``event:`` field ("message" when there is none); ``data``: the ``data:``
    lines, joined by newlines."""

    name: str
    data: str


class EventDecoder:
    """Lines (without their line ending) to events: ``event:`` and ``data:`` fields, each event
    ended by a blank line; comments (``:`` first) and other fields (``id``, ``retry``) are
    ignored, and so is an event that has no data or that the stream ends before finishing."""

    def __init__(self) -> None:
        self._name = ""
        self._data: list[str] = []
        self._first = True

    def feed(self, line: str) -> ServerEvent | None:
        """The event ``line`` completes, if it is the blank line that ends one."""
        if self._first:
            line, self._first = line.removeprefix("\ufeff"), False
        if not line:
            name, data = self._name or "message", self._data
            self._name, self._data = "", []
            return ServerEvent(name, "\n".join(data)) if data else None
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._name = value
        elif field == "data":
            self._data.append(value)
        return None


class EventReader(Generic[T]):
    """A genserve stream, event by event: ``line`` gives each ``progress`` and ``partial``
    event, keeps the ``result``, raises the ``error`` event as the plain call would raise its
    answer, and TimedOut past the deadline; unknown events are skipped. A 200 that is not an
    event stream (a proxy that does not stream) is the plain answer, its body the result."""

    def __init__(
        self,
        response: httpx.Response,
        result: Callable[[Any], T],
        partial: Callable[[Any], Partial],
        where: str,
        deadline: float,
        timeout: float | None,
    ) -> None:
        self._parse_result, self._parse_partial, self._where = result, partial, where
        self._deadline, self._timeout = deadline, timeout
        self._decoder = EventDecoder()
        self._result: T | None = None
        self.done = False
        """The result came (or the error: ``error``)."""
        self.error: GenserveError | None = None
        if not is_event_stream(response):
            self._result, self.done = parse_answer(response, result), True

    @property
    def result(self) -> T:
        if self.error is not None:
            raise self.error
        if not self.done:
            raise RuntimeError("the stream has not ended: read its events first")
        return self._result  # type: ignore[return-value]

    def line(self, line: str) -> StreamEvent | None:
        """The event ``line`` completes, if it is a progress or partial one."""
        if time.monotonic() > self._deadline:
            raise self._fail(TimedOut(f"{self._where}: not done within {self._timeout} s"))
        event = self._decoder.feed(line)
        if event is None or self.done:
            return None
        if event.name == "progress":
            return self._parse(event, Progress.from_json)
        if event.name == "partial":
            return self._parse(event, self._parse_partial)
        if event.name == "result":
            self._result = self._parse(event, self._parse_result)
            self.done = True
        elif event.name == "error":
            raise self._fail(self._parse(event, error_from_event))
        return None

    def end(self) -> None:
        """The stream ended: ConnectionFailed unless its result came."""
        if not self.done:
            raise self._fail(ConnectionFailed(f"{self._where}: the stream ended before its result"))

    def broken(self, exc: httpx.TransportError) -> GenserveError:
        """The error to raise for a stream that broke (or whose read timed out)."""
        return self._fail(transport_failure(exc, self._where, self._timeout))

    def _fail(self, error: GenserveError) -> GenserveError:
        self.error, self.done = error, True
        return error

    def _parse(self, event: ServerEvent, parse: Callable[[Any], R]) -> R:
        try:
            return parse(json.loads(event.data))
        except (ValueError, KeyError, TypeError) as exc:
            raise self._fail(
                ServerError(
                    f"{self._where}: a {event.name} event that is not the API's "
                    f"({type(exc).__name__}: {exc})",
                    code="unexpected_answer",
                )
            ) from exc

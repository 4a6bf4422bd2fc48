"""``Client`` and ``AsyncClient``: the operations of ``genserve.operations`` sent over httpx.

Everything but the I/O is written once, in ``_Exchanges``: it turns an operation into actions,
"send this request" and "sleep this long" (the retries), and reads what comes back. Each client
is a thin transport that performs those two actions, one with ``httpx.Client`` and
``time.sleep``, the other with ``httpx.AsyncClient`` and ``asyncio.sleep``.

Streaming (``stream_sample``, ``stream_complete``: ``Accept: text/event-stream``) opens its
request with the same two actions, ``Send`` marked ``stream``, so that the request is retried
as any other until the stream starts (never after). The transport then hands the lines it reads
to a ``genserve.events.EventReader``, which turns them into events, the result or the error,
written once for both; ``Stream`` and ``AsyncStream`` are the reading loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import math
import os
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeAlias, TypeVar

import httpx

from genserve import operations
from genserve.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    GenserveError,
    TimedOut,
    error_from_response,
    transport_failure,
)
from genserve.events import EVENT_STREAM, EventReader, StreamEvent, is_event_stream
from genserve.operations import ApiCall, Request

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "AsyncClient",
    "AsyncStream",
    "Client",
    "Retries",
    "Stream",
]

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0
RETRY_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = "genserve-client/0.1.0"

log = logging.getLogger("genserve")
P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Retries:
    """How a refused or failed request is sent again. Every operation of the API only reads,
    so each is safe to repeat; the client retries a 429, 502, 503 or 504 and a connection that
    failed (not a time-out, and no other 4xx), at most ``count`` times (0: never).

    It waits what the answer's ``Retry-After`` says, else ``backoff`` x 2^attempt seconds
    (randomised down to half, so that clients refused together do not return together). It
    gives up, raising the last error, rather than wait more than ``max_wait`` at once or past
    the call's time-out."""

    count: int = 2
    backoff: float = 0.5
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        if self.count < 0 or self.backoff < 0 or self.max_wait < 0:
            raise ValueError("retries: count, backoff and max_wait must not be negative")

    def wait(self, attempt: int, failure: GenserveError, remaining: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        if attempt >= self.count or not _retryable(failure):
            return None
        if failure.retry_after is not None:
            wait = failure.retry_after
        else:
            wait = self.backoff * 2**attempt * random.uniform(0.5, 1.0)
        return wait if wait <= self.max_wait and wait < remaining else None


def _retryable(failure: GenserveError) -> bool:
    if isinstance(failure, ConnectionFailed):
        return not isinstance(failure, TimedOut)
    if isinstance(failure, DeadlineExceeded):  # the caller's own deadline: again would be late
        return False
    return failure.status in RETRY_STATUSES


@dataclass(frozen=True)
class Send:
    request: httpx.Request
    stream: bool = False
    """Answer with the response open, its body unread, when it is an event stream (any other
    answer is read whole)."""


@dataclass(frozen=True)
class Sleep:
    seconds: float


Action: TypeAlias = Send | Sleep
Outcome: TypeAlias = httpx.Response | httpx.TransportError | None
"""What a transport sends back for an action: the response or the transport's error (Send),
None (Sleep)."""


class _Exchanges:
    """The logic both transports share: deadlines, requests, retries, errors."""

    def __init__(
        self,
        http: httpx.Client | httpx.AsyncClient,
        timeout: float | None,
        retries: Retries,
    ) -> None:
        self.http, self.timeout, self.retries = http, timeout, retries

    def run(self, operation: ApiCall[T]) -> Generator[Action, Outcome, T]:
        """Every request of ``operation`` in turn, within one deadline; its result."""
        timeout = operation.timeout if operation.timeout is not None else self.timeout
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        steps = operation.steps
        request = next(steps)
        while True:
            response = yield from self._exchange(request, deadline, timeout)
            try:
                request = steps.send(response)
            except StopIteration as done:
                return done.value

    def open(self, operation: ApiCall[T]) -> Generator[Action, Outcome, Opened[T]]:
        """The request of ``operation``'s events, retried as any until it is answered; the
        response, open, and the reader of what it streams, within the call's deadline."""
        events = operation.events
        if events is None:
            raise TypeError("this operation does not stream")
        operation.steps.close()  # its plain request is not sent
        timeout = operation.timeout if operation.timeout is not None else self.timeout
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        response = yield from self._exchange(events.request, deadline, timeout)
        reader = EventReader(events, response, self._where(events.request), deadline, timeout)
        return response, reader

    def _exchange(
        self, request: Request, deadline: float, timeout: float | None
    ) -> Generator[Action, Outcome, httpx.Response]:
        """One request, sent again as ``retries`` allow."""
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimedOut(f"{request.method} {request.path}: no answer within {timeout} s")
            outcome = yield Send(self._build(request, remaining), stream=request.stream)
            failure = self._failure(request, outcome, timeout)
            if failure is None:
                assert isinstance(outcome, httpx.Response)
                return outcome
            wait = self.retries.wait(attempt, failure, deadline - time.monotonic())
            if wait is None:
                raise failure
            attempt += 1
            answer = failure.code + ("" if failure.status is None else f" ({failure.status})")
            log.warning(
                "%s %s: %s; retry %d of %d in %.2g s",
                request.method,
                request.path,
                answer,
                attempt,
                self.retries.count,
                wait,
            )
            yield Sleep(wait)

    def _build(self, request: Request, remaining: float) -> httpx.Request:
        return self.http.build_request(
            request.method,
            request.path,
            json=request.body,
            headers={"Accept": EVENT_STREAM} if request.stream else None,
            timeout=None if math.isinf(remaining) else remaining,
        )

    def _failure(
        self, request: Request, outcome: Outcome, timeout: float | None
    ) -> GenserveError | None:
        """None for an answer of the operation; else the error it is."""
        if isinstance(outcome, httpx.Response):
            return None if outcome.status_code in request.answers else error_from_response(outcome)
        assert outcome is not None
        return transport_failure(outcome, self._where(request), timeout)

    def _where(self, request: Request) -> str:
        return f"{request.method} {self.http.base_url}{request.path.lstrip('/')}"


Opened: TypeAlias = tuple[httpx.Response, EventReader[T]]
"""A stream that started: its response, open, and the reader of its lines."""


def _http_options(url: str | None, api_key: str | None, timeout: float | None) -> dict[str, Any]:
    """What both httpx clients are made with: the URL and key, from the environment when not
    given."""
    url = url or os.environ.get("GENSERVE_URL") or DEFAULT_URL
    api_key = api_key if api_key is not None else os.environ.get("GENSERVE_API_KEY")
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return {"base_url": url.rstrip("/") + "/", "headers": headers, "timeout": timeout}


def _as_retries(retries: int | Retries) -> Retries:
    return retries if isinstance(retries, Retries) else Retries(count=retries)


def _documented(method: F, build: Callable[..., Any]) -> F:
    """``method`` as help() and editors should show it: ``build``'s parameters after ``self``."""
    signature = inspect.signature(build)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *signature.parameters.values()],
        return_annotation=inspect.Signature.empty,
    )
    method.__module__ = __name__
    return method


def _sync(build: Callable[P, ApiCall[T]]) -> Callable[Concatenate[Client, P], T]:
    @functools.wraps(build)
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(build(*args, **kwargs))

    return _documented(method, build)


def _async(build: Callable[P, ApiCall[T]]) -> Callable[Concatenate[AsyncClient, P], Awaitable[T]]:
    @functools.wraps(build)
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(build(*args, **kwargs))

    return _documented(method, build)


def _stream_doc(build: Callable[..., Any]) -> str:
    name = build.__name__
    return (
        f"``{name}`` as server-sent events: a stream of its ``Progress`` and ``Partial`` "
        f"events, row by row for a PixelCNN or PixelRNN (none for the other families), then "
        f"``result``, what ``{name}`` returns. Use it as a context manager and iterate over it; "
        f"``cancel()`` (or leaving the block) closes the connection and the service stops the "
        f"work at the end of its row. A refused request raises at the start as ``{name}`` "
        f"would, and is retried as it would until the stream starts, never after; an "
        f"``error`` event raises its class while iterating (an ``overloaded`` one too: it is "
        f"not retried). ``timeout`` bounds the whole stream.\n\n"
        f"``{name}``: {build.__doc__ or ''}"
    )


def _sync_stream(build: Callable[P, ApiCall[T]]) -> Callable[Concatenate[Client, P], Stream[T]]:
    @functools.wraps(build)
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Stream[T]:
        return Stream(self, build(*args, **kwargs))

    method.__name__ = method.__qualname__ = f"stream_{build.__name__}"
    method.__doc__ = _stream_doc(build)
    return _documented(method, build)


def _async_stream(
    build: Callable[P, ApiCall[T]],
) -> Callable[Concatenate[AsyncClient, P], AsyncStream[T]]:
    @functools.wraps(build)
    def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncStream[T]:
        return AsyncStream(self, build(*args, **kwargs))

    method.__name__ = method.__qualname__ = f"stream_{build.__name__}"
    method.__doc__ = _stream_doc(build)
    return _documented(method, build)


H = TypeVar("H", httpx.Client, httpx.AsyncClient)


class _Transport(Generic[H]):
    """What both clients are made of: their httpx client and the exchanges over it."""

    _http_class: type[H]

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int | Retries = 2,
    ) -> None:
        self._http: H = self._http_class(**_http_options(url, api_key, timeout))
        self._exchanges = _Exchanges(self._http, timeout, _as_retries(retries))

    @property
    def url(self) -> str:
        return str(self._http.base_url).rstrip("/")


class Client(_Transport[httpx.Client]):
    """The service's API over one keep-alive connection pool.

    ``url``: the service (default ``GENSERVE_URL``, else http://127.0.0.1:8000); ``api_key``:
    sent as ``Authorization: Bearer`` (default ``GENSERVE_API_KEY``); ``timeout``: the most
    seconds a call may take, retries included (None: no limit; each method also takes
    ``timeout=``); ``retries``: a count, or a ``Retries``.
    """

    _http_class = httpx.Client

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _run(self, operation: ApiCall[T]) -> T:
        return self._perform(self._exchanges.run(operation))

    def _perform(self, actions: Generator[Action, Outcome, R]) -> R:
        outcome: Outcome = None
        while True:
            try:
                action = actions.send(outcome)
            except StopIteration as done:
                return done.value
            if isinstance(action, Sleep):
                time.sleep(action.seconds)
                outcome = None
                continue
            try:
                response = self._http.send(action.request, stream=action.stream)
                if action.stream and not is_event_stream(response):
                    with contextlib.closing(response):
                        response.read()
                outcome = response
            except httpx.TransportError as exc:
                outcome = exc

    models = _sync(operations.models)
    model = _sync(operations.model)
    health = _sync(operations.health)
    sample = _sync(operations.sample)
    encode = _sync(operations.encode)
    reconstruct = _sync(operations.reconstruct)
    interpolate = _sync(operations.interpolate)
    score = _sync(operations.score)
    complete = _sync(operations.complete)
    traverse = _sync(operations.traverse)
    stream_sample = _sync_stream(operations.sample)
    stream_complete = _sync_stream(operations.complete)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_Transport[httpx.AsyncClient]):
    """``Client`` for asyncio: the same arguments and methods, each a coroutine."""

    _http_class = httpx.AsyncClient

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r})"

    async def _run(self, operation: ApiCall[T]) -> T:
        return await self._perform(self._exchanges.run(operation))

    async def _perform(self, actions: Generator[Action, Outcome, R]) -> R:
        outcome: Outcome = None
        while True:
            try:
                action = actions.send(outcome)
            except StopIteration as done:
                return done.value
            if isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
                outcome = None
                continue
            try:
                response = await self._http.send(action.request, stream=action.stream)
                if action.stream and not is_event_stream(response):
                    async with contextlib.aclosing(response):
                        await response.aread()
                outcome = response
            except httpx.TransportError as exc:
                outcome = exc

    models = _async(operations.models)
    model = _async(operations.model)
    health = _async(operations.health)
    sample = _async(operations.sample)
    encode = _async(operations.encode)
    reconstruct = _async(operations.reconstruct)
    interpolate = _async(operations.interpolate)
    score = _async(operations.score)
    complete = _async(operations.complete)
    traverse = _async(operations.traverse)
    stream_sample = _async_stream(operations.sample)
    stream_complete = _async_stream(operations.complete)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _cancelled() -> GenserveError:
    return GenserveError("the stream was cancelled before its result", code="cancelled")


C = TypeVar("C", Client, AsyncClient)


class _StreamState(Generic[C, T]):
    """What both streams keep: the operation, the stream once opened, whether it was
    cancelled."""

    def __init__(self, client: C, operation: ApiCall[T]) -> None:
        self._client: C = client
        self._operation = operation
        self._opened: Opened[T] | None = None
        self._cancelled = False

    @property
    def result(self) -> T:
        """What the plain call returns, once the events are read to the end; the stream's
        error, raised again, if it ended with one."""
        if self._opened is not None and self._opened[1].done:
            return self._opened[1].result
        if self._cancelled:
            raise _cancelled()
        raise RuntimeError("the stream has not ended: read its events first")

    def _mark_cancelled(self) -> None:
        if self._opened is None or not self._opened[1].done:
            self._cancelled = True


@contextlib.contextmanager
def _reading(reader: EventReader[Any]) -> Generator[None, None, None]:
    """Around reading a stream's lines: its end checked, a broken connection raised as the
    reader's error."""
    try:
        yield
    except httpx.TransportError as exc:
        raise reader.broken(exc) from exc
    reader.end()


class Stream(_StreamState[Client, T]):
    """The events of ``Client.stream_sample`` or ``stream_complete``, as they come.

    ``with`` opens the request (raising as the plain call would if it is refused); iterating
    gives each ``Progress`` and ``Partial`` event and ends after the ``result`` event, which
    ``result`` then holds, or raises the ``error`` event's exception. ``cancel()`` closes the
    connection, which stops the service's work; leaving the ``with`` block does too.

        with client.stream_sample("pixelcnn-fashion", n=4, seed=1) as stream:
            for event in stream:
                if isinstance(event, Progress):
                    print(f"{event.rows_done}/{event.rows} rows")
            result = stream.result  # the SampleResult of client.sample(...)
    """

    _events: Generator[StreamEvent, None, None] | None = None

    def _open(self) -> Opened[T]:
        if self._opened is None:
            if self._cancelled:
                raise _cancelled()
            self._opened = self._client._perform(self._client._exchanges.open(self._operation))
        return self._opened

    def __iter__(self) -> Stream[T]:
        return self

    def __next__(self) -> StreamEvent:
        if self._events is None:
            self._events = self._read()
        return next(self._events)

    def _read(self) -> Generator[StreamEvent, None, None]:
        if self._cancelled:
            return
        response, reader = self._open()
        with contextlib.closing(response), _reading(reader):
            if reader.done:
                return
            for line in response.iter_lines():
                event = reader.line(line)
                if event is not None:
                    yield event
                elif reader.done:
                    break

    def cancel(self) -> None:
        """Close the connection: the service stops the work at the end of its row. The events
        end, and ``result`` raises (a GenserveError, code ``cancelled``) unless it had come.
        Call it from the thread that reads the stream."""
        self._mark_cancelled()
        if self._events is not None:
            self._events.close()
        if self._opened is not None:
            self._opened[0].close()

    def __enter__(self) -> Stream[T]:
        self._open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()


class AsyncStream(_StreamState[AsyncClient, T]):
    """``Stream`` for ``AsyncClient``: ``async with`` and ``async for``, ``await cancel()``.
    Cancelling the task that reads it in its ``async with`` block cancels the stream too."""

    _events: AsyncGenerator[StreamEvent, None] | None = None

    async def _open(self) -> Opened[T]:
        if self._opened is None:
            if self._cancelled:
                raise _cancelled()
            actions = self._client._exchanges.open(self._operation)
            self._opened = await self._client._perform(actions)
        return self._opened

    def __aiter__(self) -> AsyncStream[T]:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._events is None:
            self._events = self._read()
        return await anext(self._events)

    async def _read(self) -> AsyncGenerator[StreamEvent, None]:
        if self._cancelled:
            return
        response, reader = await self._open()
        async with contextlib.aclosing(response):
            with _reading(reader):
                if reader.done:
                    return
                async for line in response.aiter_lines():
                    event = reader.line(line)
                    if event is not None:
                        yield event
                    elif reader.done:
                        break

    async def cancel(self) -> None:
        """Close the connection: the service stops the work at the end of its row. The events
        end, and ``result`` raises (a GenserveError, code ``cancelled``) unless it had come."""
        self._mark_cancelled()
        if self._events is not None:
            with contextlib.suppress(RuntimeError):  # being read by another task
                await self._events.aclose()
        if self._opened is not None:
            await self._opened[0].aclose()

    async def __aenter__(self) -> AsyncStream[T]:
        await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cancel()

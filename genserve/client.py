"""``Client`` and ``AsyncClient``: one method per operation of the API, over httpx.

Both build each request from the method's arguments (``_body``), retry it (``Retries``) and
read its answer the same way; only sending differs. ``timeout`` (seconds) is the client's limit
for a whole call, retries included; ``timeout_ms`` (milliseconds) is sent in the body: the
service's deadline for the work, past which it answers 504 (DeadlineExceeded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import time
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Literal, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
import numpy as np

from genserve.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    GenserveError,
    TimedOut,
    error_from_response,
    parse_answer,
    transport_failure,
)
from genserve.events import EVENT_STREAM, EventReader, StreamEvent, is_event_stream
from genserve.images import ImageInput, Images, encode_image, encode_images, encode_mask
from genserve.results import (
    CompleteResult,
    EncodeResult,
    Health,
    InterpolateResult,
    ModelInfo,
    Partial,
    ReconstructResult,
    SampleResult,
    ScoreResult,
    TraverseResult,
)

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0
RETRY_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = "genserve-client/0.1.0"
OK = frozenset({200})
READY = frozenset({200, 503})
"""``/health/ready``'s answers: not ready is one."""

log = logging.getLogger("genserve")
T = TypeVar("T")
Json = dict[str, Any]
Label: TypeAlias = str | int
"""A class of a conditional model: a name of its card's ``class_names`` (any case) or an index."""
Labels: TypeAlias = Label | Sequence[Label]
Latent: TypeAlias = Sequence[float] | np.ndarray
"""D floats: a 1-D array or a sequence of numbers."""
End: TypeAlias = int | Latent | ImageInput
"""An interpolation end: an int is a seed, a 1-D array or a list of numbers a latent, anything
else one image (needs an encoder)."""


@dataclass(frozen=True)
class Retries:
    """How a refused or failed request is sent again: a 429, 502, 503 or 504, or a connection
    that failed (never a time-out), at most ``count`` times. Each wait is the answer's
    ``Retry-After``, else ``backoff`` x 2^attempt seconds randomised down to half; a wait over
    ``max_wait`` or past the call's time-out gives up, raising the last error."""

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


# ---------------------------------------------------------------- arguments to JSON


def _label(label: Label | None) -> Label | None:
    return label if label is None or isinstance(label, str) else _int(label, "label")


def _labels(labels: Labels | None) -> Label | list[Label] | None:
    if labels is None or isinstance(labels, str | int | np.integer):
        return _label(labels)
    return [item if isinstance(item, str) else _int(item, "label") for item in labels]


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{what}: expected an int or a class name, got {type(value).__name__}")
    return int(value)


def _latent(values: Latent) -> list[float]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"latent: expected D floats, got shape {list(array.shape)}")
    return [float(v) for v in array]


def _end(value: End, what: str) -> Json:
    if isinstance(value, bool):
        raise TypeError(f"{what}: a seed is an int, not a bool")
    if isinstance(value, int | np.integer):
        return {"seed": int(value)}
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return {"latent": _latent(value)}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return {"latent": _latent(value)}
    return {"image": encode_image(value, what)}


_FIELDS: dict[str, Callable[[Any], Any]] = {
    "images": encode_images,
    "image": encode_image,
    "mask": encode_mask,
    "start": partial(_end, what="start"),
    "end": partial(_end, what="end"),
    "latent": _latent,
    "range": lambda bounds: [float(bounds[0]), float(bounds[1])],
    "scale": lambda scale: None if scale == 1 else scale,  # 1: the service's default
}
"""How an argument becomes its request field, by name (any other is sent as it is)."""
_NOT_SENT = frozenset({"self", "timeout", "columns"})
"""A method's arguments that are no field of its request."""


def _body(args: Json, label: Callable[[Any], Any] = _label) -> Json:
    """A request's JSON body from its method's arguments (``locals()``), in their order: each
    converted by ``_FIELDS`` (``label`` by ``label``), ``format`` png wherever images come back,
    None (the service's default) left out."""
    body: Json = {}
    for name, value in args.items():
        if name not in _NOT_SENT and value is not None:
            convert = label if name == "label" else _FIELDS.get(name)
            body[name] = value if convert is None else convert(value)
    if "scale" in args:
        body["format"] = "png"
    return {name: value for name, value in body.items() if value is not None}


def _model_list(body: Json) -> list[ModelInfo]:
    return [ModelInfo.from_json(model) for model in body["models"]]


def _health(live: httpx.Response, ready: httpx.Response) -> Health:
    return parse_answer(ready, lambda body: Health.from_json(live.status_code == 200, body))


# ---------------------------------------------------------------- clients

H = TypeVar("H", httpx.Client, httpx.AsyncClient)


class _Base(Generic[H]):
    """What both clients share: the httpx client, the time-outs, each attempt's request and
    the retries. Each client writes out its methods and its loop of attempts (``_send``)."""

    _http_class: type[H]

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int | Retries = 2,
    ) -> None:
        url = url or os.environ.get("GENSERVE_URL") or DEFAULT_URL
        api_key = api_key if api_key is not None else os.environ.get("GENSERVE_API_KEY")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        base_url = url.rstrip("/") + "/"
        self._http: H = self._http_class(base_url=base_url, headers=headers, timeout=timeout)
        self._timeout = timeout
        self._retries = retries if isinstance(retries, Retries) else Retries(count=retries)

    @property
    def url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _limit(self, timeout: float | None) -> tuple[float | None, float]:
        """The call's time-out (the client's when None) and its deadline on the monotonic clock."""
        timeout = self._timeout if timeout is None else timeout
        return timeout, math.inf if timeout is None else time.monotonic() + timeout

    def _request(
        self, method: str, path: str, body: Json | None, timeout: float | None, deadline: float
    ) -> httpx.Request:
        """One attempt's request, given what is left of the deadline; TimedOut if nothing is."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimedOut(f"{method} {path}: no answer within {timeout} s")
        return self._http.build_request(
            method, path, json=body, timeout=None if math.isinf(remaining) else remaining
        )

    def _wait(
        self, attempt: int, failure: GenserveError, method: str, path: str, deadline: float
    ) -> float:
        """Seconds to wait before retrying, logged; ``failure`` raised when it is not retried."""
        wait = self._retries.wait(attempt, failure, deadline - time.monotonic())
        if wait is None:
            raise failure
        answer = failure.code + ("" if failure.status is None else f" ({failure.status})")
        count = self._retries.count
        log.warning(
            "%s %s: %s; retry %d of %d in %.2g s", method, path, answer, attempt + 1, count, wait
        )
        return wait

    def _where(self, method: str, path: str) -> str:
        return f"{method} {self._http.base_url}{path.lstrip('/')}"


class Client(_Base[httpx.Client]):
    """The service's API over one keep-alive connection pool.

    ``url``: the service (default ``GENSERVE_URL``, else http://127.0.0.1:8000); ``api_key``:
    sent as ``Authorization: Bearer`` (default ``GENSERVE_API_KEY``); ``timeout``: the most
    seconds a call may take, retries included (None: no limit; each method also takes
    ``timeout=``); ``retries``: a count, or a ``Retries``.
    """

    _http_class = httpx.Client

    def _send(
        self,
        method: str,
        path: str,
        body: Json | None,
        timeout: float | None,
        deadline: float,
        *,
        stream: bool = False,
        answers: frozenset[int] = OK,
    ) -> httpx.Response:
        """The answer to one request, sent again as the retries allow. With ``stream``, an
        event stream is answered open, its body unread (any other answer is read whole)."""
        attempt = 0
        while True:
            request = self._request(method, path, body, timeout, deadline)
            if stream:
                request.headers["Accept"] = EVENT_STREAM
            try:
                response = self._http.send(request, stream=stream)
                if stream and not is_event_stream(response):
                    with contextlib.closing(response):
                        response.read()
            except httpx.TransportError as exc:
                failure: GenserveError = transport_failure(exc, self._where(method, path), timeout)
            else:
                if response.status_code in answers:
                    return response
                failure = error_from_response(response)
            time.sleep(self._wait(attempt, failure, method, path, deadline))
            attempt += 1

    def _call(
        self, path: str, body: Json | None, timeout: float | None, parse: Callable[..., T]
    ) -> T:
        method = "GET" if body is None else "POST"
        return parse_answer(self._send(method, path, body, *self._limit(timeout)), parse)

    def models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        """Every model of the store, with its card and state (``GET /models``)."""
        return self._call("/models", None, timeout, _model_list)

    def model(self, name: str, *, timeout: float | None = None) -> ModelInfo:
        """One model (``GET /models/{name}``); ModelNotFound if the store has none of that name."""
        return self._call("/models/" + quote(name, safe=""), None, timeout, ModelInfo.from_json)

    def health(self, *, timeout: float | None = None) -> Health:
        """``/health/live``, then ``/health/ready``: not ready is an answer (``ready`` False,
        ``error`` saying why)."""
        timeout, deadline = self._limit(timeout)
        live = self._send("GET", "/health/live", None, timeout, deadline)
        ready = self._send("GET", "/health/ready", None, timeout, deadline, answers=READY)
        return _health(live, ready)

    def sample(
        self,
        model: str | None = None,
        *,
        n: int = 1,
        seed: int | None = None,
        temperature: float | None = None,
        truncation: float | None = None,
        label: Label | None = None,
        scale: int = 1,
        columns: int | None = None,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> SampleResult:
        """Draw ``n`` images (``POST /sample``); ``seed`` draws them again; ``temperature``:
        PixelCNN, PixelRNN; ``truncation``: GANs; ``label``: a conditional model's class;
        ``scale`` enlarges them on the service; ``columns``: the result's ``grid`` default."""
        body, parse = _body(locals()), partial(SampleResult.from_json, columns=columns)
        return self._call("/sample", body, timeout, parse)

    def encode(
        self,
        model: str | None,
        images: Images,
        *,
        label: Labels | None = None,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> EncodeResult:
        """Each image's latent (``POST /encode``): a VAE's posterior ``mean`` and ``log_var``,
        an autoencoder's ``z``. ``label``: a conditional model's class, one or one per image."""
        return self._call("/encode", _body(locals(), _labels), timeout, EncodeResult.from_json)

    def reconstruct(
        self,
        model: str | None,
        images: Images,
        *,
        label: Labels | None = None,
        scale: int = 1,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> ReconstructResult:
        """Each image decoded from its posterior mean, and its squared error (``POST
        /reconstruct``)."""
        body = _body(locals(), _labels)
        return self._call("/reconstruct", body, timeout, ReconstructResult.from_json)

    def interpolate(
        self,
        model: str | None,
        start: End,
        end: End,
        *,
        steps: int = 8,
        method: Literal["lerp", "slerp"] = "lerp",
        label: Label | None = None,
        scale: int = 1,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> InterpolateResult:
        """``steps`` images from ``start`` to ``end``, both included (``POST /interpolate``).
        Each end is a seed (int), a latent (1-D array or list of numbers) or an image."""
        return self._call("/interpolate", _body(locals()), timeout, InterpolateResult.from_json)

    def score(
        self,
        model: str | None,
        images: Images,
        *,
        k: int | None = None,
        seed: int | None = None,
        label: Labels | None = None,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> ScoreResult:
        """Each image's likelihood (``POST /score``): exact for PixelCNN and PixelRNN, an IWAE
        bound with ``k`` importance samples from ``seed`` for the VAEs; with ``label``,
        log p(x | label)."""
        return self._call("/score", _body(locals(), _labels), timeout, ScoreResult.from_json)

    def complete(
        self,
        model: str | None,
        images: Images,
        *,
        rows: int | None = None,
        mask: ImageInput | None = None,
        samples: int = 1,
        seed: int | None = None,
        temperature: float | None = None,
        scale: int = 1,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> CompleteResult:
        """Keep the top ``rows`` of each image, or the pixels ``mask`` marks (non-zero, or
        white), and draw the rest, ``samples`` times (``POST /complete``; PixelCNN and
        PixelRNN). Completion i draws from ``seed + i``."""
        return self._call("/complete", _body(locals()), timeout, CompleteResult.from_json)

    def traverse(
        self,
        model: str | None = None,
        *,
        dim: int,
        range: tuple[float, float] = (-3.0, 3.0),
        steps: int = 8,
        seed: int | None = None,
        image: ImageInput | None = None,
        latent: Latent | None = None,
        label: Label | None = None,
        scale: int = 1,
        columns: int | None = None,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> TraverseResult:
        """Latent dimension ``dim`` set to ``steps`` values across ``range``, the others held,
        and decoded (``POST /traverse``; VAEs). The base latent: ``seed``'s, ``image``'s
        posterior mean, or ``latent`` (at most one; none: a seed is drawn and echoed)."""
        body, parse = _body(locals()), partial(TraverseResult.from_json, columns=columns)
        return self._call("/traverse", body, timeout, parse)

    def stream_sample(
        self,
        model: str | None = None,
        *,
        n: int = 1,
        seed: int | None = None,
        temperature: float | None = None,
        truncation: float | None = None,
        label: Label | None = None,
        scale: int = 1,
        columns: int | None = None,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> Stream[SampleResult]:
        """``sample`` as server-sent events: ``Progress`` and ``Partial`` row by row for a
        PixelCNN or PixelRNN (none for the other families), then ``result``, what ``sample``
        returns. See ``Stream``; ``timeout`` bounds the whole stream."""
        body, result = _body(locals()), partial(SampleResult.from_json, columns=columns)
        return Stream(self, "/sample", body, timeout, result, Partial.from_json)

    def stream_complete(
        self,
        model: str | None,
        images: Images,
        *,
        rows: int | None = None,
        mask: ImageInput | None = None,
        samples: int = 1,
        seed: int | None = None,
        temperature: float | None = None,
        scale: int = 1,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> Stream[CompleteResult]:
        """``complete`` as server-sent events, as ``stream_sample`` streams ``sample``."""
        body, partials = _body(locals()), partial(Partial.from_json, samples=samples)
        return Stream(self, "/complete", body, timeout, CompleteResult.from_json, partials)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_Base[httpx.AsyncClient]):
    """``Client`` for asyncio: the same arguments and methods, each a coroutine."""

    _http_class = httpx.AsyncClient

    async def _send(
        self,
        method: str,
        path: str,
        body: Json | None,
        timeout: float | None,
        deadline: float,
        *,
        stream: bool = False,
        answers: frozenset[int] = OK,
    ) -> httpx.Response:
        """``Client._send``, awaited."""
        attempt = 0
        while True:
            request = self._request(method, path, body, timeout, deadline)
            if stream:
                request.headers["Accept"] = EVENT_STREAM
            try:
                response = await self._http.send(request, stream=stream)
                if stream and not is_event_stream(response):
                    async with contextlib.aclosing(response):
                        await response.aread()
            except httpx.TransportError as exc:
                failure: GenserveError = transport_failure(exc, self._where(method, path), timeout)
            else:
                if response.status_code in answers:
                    return response
                failure = error_from_response(response)
            await asyncio.sleep(self._wait(attempt, failure, method, path, deadline))
            attempt += 1

    async def _call(
        self, path: str, body: Json | None, timeout: float | None, parse: Callable[..., T]
    ) -> T:
        method = "GET" if body is None else "POST"
        return parse_answer(await self._send(method, path, body, *self._limit(timeout)), parse)

    async def models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        """``Client.models``, awaited."""
        return await self._call("/models", None, timeout, _model_list)

    async def model(self, name: str, *, timeout: float | None = None) -> ModelInfo:
        """``Client.model``, awaited."""
        path = "/models/" + quote(name, safe="")
        return await self._call(path, None, timeout, ModelInfo.from_json)

    async def health(self, *, timeout: float | None = None) -> Health:
        """``Client.health``, awaited."""
        timeout, deadline = self._limit(timeout)
        live = await self._send("GET", "/health/live", None, timeout, deadline)
        ready = await self._send("GET", "/health/ready", None, timeout, deadline, answers=READY)
        return _health(live, ready)

    async def sample(
        self,
        model: str | None = None,
        *,
        n: int = 1,
        seed: int | None = None,
        temperature: float | None = None,
        truncation: float | None = None,
        label: Label | None = None,
        scale: int = 1,
        columns: int | None = None,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> SampleResult:
        """``Client.sample``, awaited."""
        body, parse = _body(locals()), partial(SampleResult.from_json, columns=columns)
        return await self._call("/sample", body, timeout, parse)

    async def encode(
        self,
        model: str | None,
        images: Images,
        *,
        label: Labels | None = None,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> EncodeResult:
        """``Client.encode``, awaited."""
        body = _body(locals(), _labels)
        return await self._call("/encode", body, timeout, EncodeResult.from_json)

    async def reconstruct(
        self,
        model: str | None,
        images: Images,
        *,
        label: Labels | None = None,
        scale: int = 1,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> ReconstructResult:
        """``Client.reconstruct``, awaited."""
        body = _body(locals(), _labels)
        return await self._call("/reconstruct", body, timeout, ReconstructResult.from_json)

    async def interpolate(
        self,
        model: str | None,
        start: End,
        end: End,
        *,
        steps: int = 8,
        method: Literal["lerp", "slerp"] = "lerp",
        label: Label | None = None,
        scale: int = 1,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> InterpolateResult:
        """``Client.interpolate``, awaited."""
        body = _body(locals())
        return await self._call("/interpolate", body, timeout, InterpolateResult.from_json)

    async def score(
        self,
        model: str | None,
        images: Images,
        *,
        k: int | None = None,
        seed: int | None = None,
        label: Labels | None = None,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> ScoreResult:
        """``Client.score``, awaited."""
        body = _body(locals(), _labels)
        return await self._call("/score", body, timeout, ScoreResult.from_json)

    async def complete(
        self,
        model: str | None,
        images: Images,
        *,
        rows: int | None = None,
        mask: ImageInput | None = None,
        samples: int = 1,
        seed: int | None = None,
        temperature: float | None = None,
        scale: int = 1,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> CompleteResult:
        """``Client.complete``, awaited."""
        return await self._call("/complete", _body(locals()), timeout, CompleteResult.from_json)

    async def traverse(
        self,
        model: str | None = None,
        *,
        dim: int,
        range: tuple[float, float] = (-3.0, 3.0),
        steps: int = 8,
        seed: int | None = None,
        image: ImageInput | None = None,
        latent: Latent | None = None,
        label: Label | None = None,
        scale: int = 1,
        columns: int | None = None,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> TraverseResult:
        """``Client.traverse``, awaited."""
        body, parse = _body(locals()), partial(TraverseResult.from_json, columns=columns)
        return await self._call("/traverse", body, timeout, parse)

    def stream_sample(
        self,
        model: str | None = None,
        *,
        n: int = 1,
        seed: int | None = None,
        temperature: float | None = None,
        truncation: float | None = None,
        label: Label | None = None,
        scale: int = 1,
        columns: int | None = None,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> AsyncStream[SampleResult]:
        """``Client.stream_sample``, read with ``async with`` and ``async for``."""
        body, result = _body(locals()), partial(SampleResult.from_json, columns=columns)
        return AsyncStream(self, "/sample", body, timeout, result, Partial.from_json)

    def stream_complete(
        self,
        model: str | None,
        images: Images,
        *,
        rows: int | None = None,
        mask: ImageInput | None = None,
        samples: int = 1,
        seed: int | None = None,
        temperature: float | None = None,
        scale: int = 1,
        timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> AsyncStream[CompleteResult]:
        """``Client.stream_complete``, read with ``async with`` and ``async for``."""
        body, partials = _body(locals()), partial(Partial.from_json, samples=samples)
        return AsyncStream(self, "/complete", body, timeout, CompleteResult.from_json, partials)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# ---------------------------------------------------------------- streams

C = TypeVar("C", Client, AsyncClient)
Opened: TypeAlias = tuple[httpx.Response, EventReader[T]]
"""A stream that started: its response, open, and the reader of its lines."""


@dataclass(eq=False, repr=False)
class _StreamState(Generic[C, T]):
    """What both streams keep: the request, the stream once opened, whether it was cancelled."""

    _client: C
    _path: str
    _body: Json
    _timeout: float | None
    _parse_result: Callable[[Json], T]
    _parse_partial: Callable[[Json], Partial]
    _opened: Opened[T] | None = None
    _cancelled: bool = False

    @property
    def result(self) -> T:
        """What the plain call returns, once the events are read to the end; the stream's
        error, raised again, if it ended with one."""
        if self._opened is not None and self._opened[1].done:
            return self._opened[1].result
        self._check_cancelled()
        raise RuntimeError("the stream has not ended: read its events first")

    def _check_cancelled(self) -> None:
        if self._cancelled:
            raise GenserveError("the stream was cancelled before its result", code="cancelled")

    def _reader(
        self, response: httpx.Response, timeout: float | None, deadline: float
    ) -> Opened[T]:
        where = self._client._where("POST", self._path)
        parse = self._parse_result, self._parse_partial
        return response, EventReader(response, *parse, where, deadline, timeout)

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
    """The events of ``Client.stream_sample`` or ``stream_complete``: ``with`` opens the
    request (retried as the plain call until the stream starts); iterating gives each
    ``Progress`` and ``Partial`` event, ends after the ``result`` event, which ``result`` then
    holds, or raises the ``error`` event's exception. ``cancel()``, or leaving the ``with``
    block, closes the connection: the service stops its work at the end of the row."""

    _events: Generator[StreamEvent, None, None] | None = None

    def _open(self) -> Opened[T]:
        if self._opened is None:
            self._check_cancelled()
            timeout, deadline = self._client._limit(self._timeout)
            response = self._client._send(
                "POST", self._path, self._body, timeout, deadline, stream=True
            )
            self._opened = self._reader(response, timeout, deadline)
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
        """Close the connection: the service stops at the end of its row, and ``result``
        raises (code ``cancelled``) unless it had come. Call it from the reading thread."""
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
            self._check_cancelled()
            timeout, deadline = self._client._limit(self._timeout)
            response = await self._client._send(
                "POST", self._path, self._body, timeout, deadline, stream=True
            )
            self._opened = self._reader(response, timeout, deadline)
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
        """``Stream.cancel``, awaited."""
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

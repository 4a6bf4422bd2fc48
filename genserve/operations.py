"""Every operation of the API, written once for both clients: a function that takes the
operation's arguments and returns an ``ApiCall``, the HTTP requests it makes (a generator that
yields each request and is sent back its response) and how it reads the answer; for
``sample`` and ``complete``, also how they read as server-sent events (``Events``). No I/O
happens here; ``genserve.client`` sends the requests, synchronously or not.

Two time limits: ``timeout`` (seconds) is the client's own, the most a call may wait, retries
included; ``timeout_ms`` (milliseconds) is sent in the body, the service's deadline for the
work, past which it stops drawing and answers 504 ``deadline_exceeded`` (DeadlineExceeded)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
import numpy as np

from genserve.errors import ServerError
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

T = TypeVar("T")
Json = dict[str, Any]
Label: TypeAlias = str | int
"""A class of a conditional model: a name of its card's ``class_names`` (any case) or an index."""
Labels: TypeAlias = Label | Sequence[Label]
Latent: TypeAlias = Sequence[float] | np.ndarray
"""D floats: a 1-D array or a sequence of numbers."""
End: TypeAlias = int | Latent | ImageInput
"""An interpolation end: an int is a seed (the image ``sample`` gives for n=1 and that seed),
a 1-D array or a list of numbers a latent, anything else one image (needs an encoder)."""


@dataclass(frozen=True)
class Request:
    method: Literal["GET", "POST"]
    path: str
    body: Json | None = None
    answers: frozenset[int] = frozenset({200})
    """Statuses that are the operation's answer rather than an error."""
    stream: bool = False
    """Ask for server-sent events (``Accept: text/event-stream``), read as they come."""


Steps: TypeAlias = Generator[Request, httpx.Response, T]


@dataclass(frozen=True)
class Events(Generic[T]):
    """An operation as server-sent events: its one request, how its ``result`` event reads
    (the plain answer's body) and how a ``partial`` event does."""

    request: Request
    result: Callable[[Json], T]
    partial: Callable[[Json], Partial]


@dataclass(frozen=True)
class ApiCall(Generic[T]):
    steps: Steps[T]
    timeout: float | None
    """The call's time-out; None: the client's."""
    events: Events[T] | None = None
    """The operation as server-sent events (``sample``, ``complete``); None: it has none."""


def _single(request: Request, parse: Callable[[Json], T]) -> Steps[T]:
    response = yield request
    return _read(response, parse)


def _read(response: httpx.Response, parse: Callable[[Json], T]) -> T:
    """``parse`` of the answer's JSON; ServerError for an answer that is not the API's (a
    proxy's page, say)."""
    try:
        return parse(response.json())
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerError(
            f"{response.request.method} {response.request.url}: the answer is not the API's "
            f"({type(exc).__name__}: {exc})",
            status=response.status_code,
            code="unexpected_answer",
        ) from exc


def _post(
    path: str,
    body: Json,
    parse: Callable[[Json], T],
    timeout: float | None,
    partial: Callable[[Json], Partial] | None = None,
) -> ApiCall[T]:
    """One POST; with ``partial``, one that can stream its progress too."""
    request = Request("POST", path, _without_none(body))
    events = None if partial is None else Events(replace(request, stream=True), parse, partial)
    return ApiCall(_single(request, parse), timeout, events)


def _without_none(body: Json) -> Json:
    """The body without the fields left to the service's defaults."""
    return {key: value for key, value in body.items() if value is not None}


def _scale(scale: int) -> int | None:
    return None if scale == 1 else scale


# ---------------------------------------------------------------- the store and health


def models(*, timeout: float | None = None) -> ApiCall[list[ModelInfo]]:
    """Every model of the store, with its card and state (``GET /models``)."""

    def parse(body: Json) -> list[ModelInfo]:
        return [ModelInfo.from_json(model) for model in body["models"]]

    return ApiCall(_single(Request("GET", "/models"), parse), timeout)


def model(name: str, *, timeout: float | None = None) -> ApiCall[ModelInfo]:
    """One model (``GET /models/{name}``); ModelNotFound if the store has none of that name."""
    request = Request("GET", "/models/" + quote(name, safe=""))
    return ApiCall(_single(request, ModelInfo.from_json), timeout)


def health(*, timeout: float | None = None) -> ApiCall[Health]:
    """Liveness and readiness: ``/health/live``, then ``/health/ready`` (not ready is an
    answer: ``ready`` False, with ``error`` saying why)."""

    def steps() -> Steps[Health]:
        live = yield Request("GET", "/health/live")
        ready = yield Request("GET", "/health/ready", answers=frozenset({200, 503}))
        return _read(ready, lambda body: Health.from_json(live.status_code == 200, body))

    return ApiCall(steps(), timeout)


# ---------------------------------------------------------------- generation


def sample(
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
) -> ApiCall[SampleResult]:
    """Draw ``n`` images (``POST /sample``). ``seed`` makes them again (drawn and echoed when
    omitted); ``temperature``: PixelCNN and PixelRNN; ``truncation``: GANs; ``label``: the class,
    for a conditional model. ``scale`` enlarges each image on the service (nearest neighbour);
    ``columns`` is the result's ``grid`` default. ``model`` None: the service's default.

    ``timeout_ms``: the service's deadline for the work (504 DeadlineExceeded past it, the
    sampling stopped at the end of its row), where ``timeout`` is the client's own, in seconds,
    for the whole call. ``Client.stream_sample`` takes the same arguments and streams the
    progress of a PixelCNN or PixelRNN row by row."""
    body = {
        "model": model,
        "n": n,
        "seed": seed,
        "temperature": temperature,
        "truncation": truncation,
        "label": _label(label),
        "format": "png",
        "scale": _scale(scale),
        "timeout_ms": timeout_ms,
    }
    return _post(
        "/sample", body, lambda b: SampleResult.from_json(b, columns), timeout, Partial.from_json
    )


def encode(
    model: str | None,
    images: Images,
    *,
    label: Labels | None = None,
    timeout_ms: int | None = None,
    timeout: float | None = None,
) -> ApiCall[EncodeResult]:
    """Each image's latent (``POST /encode``): a VAE's posterior ``mean`` and ``log_var``, an
    autoencoder's ``z``. ``label``: a conditional model's class, one or one per image.
    ``timeout_ms``: the service's deadline (see ``sample``)."""
    body = {
        "model": model,
        "images": encode_images(images),
        "label": _labels(label),
        "timeout_ms": timeout_ms,
    }
    return _post("/encode", body, EncodeResult.from_json, timeout)


def reconstruct(
    model: str | None,
    images: Images,
    *,
    label: Labels | None = None,
    scale: int = 1,
    timeout_ms: int | None = None,
    timeout: float | None = None,
) -> ApiCall[ReconstructResult]:
    """Each image decoded from its posterior mean, and its squared error (``POST
    /reconstruct``). ``timeout_ms``: the service's deadline (see ``sample``)."""
    body = {
        "model": model,
        "images": encode_images(images),
        "label": _labels(label),
        "format": "png",
        "scale": _scale(scale),
        "timeout_ms": timeout_ms,
    }
    return _post("/reconstruct", body, ReconstructResult.from_json, timeout)


def interpolate(
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
) -> ApiCall[InterpolateResult]:
    """``steps`` images from ``start`` to ``end``, both included (``POST /interpolate``). Each
    end is a seed (int), a latent (1-D array or list of numbers) or an image. ``timeout_ms``:
    the service's deadline (see ``sample``)."""
    body = {
        "model": model,
        "start": _end(start, "start"),
        "end": _end(end, "end"),
        "steps": steps,
        "method": method,
        "label": _label(label),
        "format": "png",
        "scale": _scale(scale),
        "timeout_ms": timeout_ms,
    }
    return _post("/interpolate", body, InterpolateResult.from_json, timeout)


def score(
    model: str | None,
    images: Images,
    *,
    k: int | None = None,
    seed: int | None = None,
    label: Labels | None = None,
    timeout_ms: int | None = None,
    timeout: float | None = None,
) -> ApiCall[ScoreResult]:
    """Each image's likelihood (``POST /score``): exact for PixelCNN and PixelRNN, an IWAE bound
    with ``k`` importance samples from ``seed`` for the VAEs; ``label`` scores log p(x | label)
    on a conditional model. ``timeout_ms``: the service's deadline (see ``sample``)."""
    body = {
        "model": model,
        "images": encode_images(images),
        "k": k,
        "seed": seed,
        "label": _labels(label),
        "timeout_ms": timeout_ms,
    }
    return _post("/score", body, ScoreResult.from_json, timeout)


def complete(
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
) -> ApiCall[CompleteResult]:
    """Keep the top ``rows`` of each image, or the pixels ``mask`` marks (non-zero, or white),
    and draw the rest, ``samples`` times (``POST /complete``; PixelCNN and PixelRNN).
    Completion i draws from ``seed + i``. ``timeout_ms``: the service's deadline (see
    ``sample``). ``Client.stream_complete`` takes the same arguments and streams the progress
    row by row."""
    body = {
        "model": model,
        "images": encode_images(images),
        "rows": rows,
        "mask": None if mask is None else encode_mask(mask),
        "samples": samples,
        "seed": seed,
        "temperature": temperature,
        "format": "png",
        "scale": _scale(scale),
        "timeout_ms": timeout_ms,
    }
    partial = functools.partial(Partial.from_json, samples=samples)
    return _post("/complete", body, CompleteResult.from_json, timeout, partial)


def traverse(
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
) -> ApiCall[TraverseResult]:
    """Latent dimension ``dim`` set to ``steps`` values across ``range``, the others held, and
    decoded (``POST /traverse``; VAEs). The base latent: ``seed``'s, ``image``'s posterior mean,
    or ``latent`` (at most one; none: a seed is drawn and echoed). ``timeout_ms``: the
    service's deadline (see ``sample``)."""
    body = {
        "model": model,
        "dim": dim,
        "range": [float(range[0]), float(range[1])],
        "steps": steps,
        "seed": seed,
        "image": None if image is None else encode_image(image),
        "latent": None if latent is None else _latent(latent),
        "label": _label(label),
        "format": "png",
        "scale": _scale(scale),
        "timeout_ms": timeout_ms,
    }
    return _post("/traverse", body, lambda b: TraverseResult.from_json(b, columns), timeout)


# ---------------------------------------------------------------- arguments to JSON


def _label(label: Label | None) -> Label | None:
    if label is None or isinstance(label, str):
        return label
    return _int(label, "label")


def _labels(labels: Labels | None) -> Label | list[Label] | None:
    if labels is None or isinstance(labels, str | int | np.integer):
        return _label(labels)
    return [_int(item, "label") if not isinstance(item, str) else item for item in labels]


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

"""sample, encode, reconstruct, interpolate and traverse, per family, on numpy arrays. No HTTP
here. Scoring is in ``service.scoring``, completion in ``service.completion``."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import anyio.to_thread
import numpy as np

from service import autoregressive, labels
from service.config import Settings
from service.errors import InvalidInput, LimitExceeded, Overloaded, UnsupportedOperation
from service.families import FAMILIES, Family, Operation
from service.imaging import parse_image, parse_images
from service.labels import LabelInput
from service.registry import LoadedModel
from service.store import ModelCard

Method = Literal["lerp", "slerp"]


@dataclass(frozen=True)
class Limits:
    max_n: int = 64
    max_autoregressive_n: int = 16
    max_images: int = 64
    queue_limit: int = 256
    """Most autoregressive samplings waiting for their turn (batched graphs have their own)."""
    queue_timeout: float = 0.0
    """Seconds a sampling may wait for its turn; 0: no limit."""
    max_iwae_k: int = 1000
    max_iwae_samples: int = 6400

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        most = min(settings.max_autoregressive_n, settings.max_n)
        return cls(
            settings.max_n,
            most,
            settings.max_images,
            settings.batch_queue_limit,
            settings.queue_timeout_ms / 1000,
            settings.max_iwae_k,
            settings.max_iwae_samples,
        )


@dataclass(frozen=True)
class Endpoint:
    """One end of an interpolation: exactly one of an image, a latent vector or a seed."""

    image: Any = None
    latent: Sequence[float] | None = None
    seed: int | None = None


def new_seed() -> int:
    return secrets.randbits(32)


def latents(seed: int, n: int, dim: int) -> np.ndarray:
    """Row i depends on the seed only, never on n."""
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)


def truncate(z: np.ndarray, seed: int, threshold: float) -> np.ndarray:
    """Resample every entry with |z| > threshold until none is left (the truncation trick).

    Each row redraws from its own generator, seeded by (seed, row), so that row i stays the
    same whatever n is.
    """
    z = z.copy()
    for row in np.flatnonzero((np.abs(z) > threshold).any(axis=1)):
        rng = np.random.default_rng([seed, int(row)])
        while (outside := np.abs(z[row]) > threshold).any():
            z[row, outside] = rng.standard_normal(int(outside.sum()), dtype=np.float32)
    return z


ImageFinish = Callable[[np.ndarray], Any]
"""Applied to a request's (B, C, H, W) images in the worker thread, e.g. PNG encoding."""


def _images(images: np.ndarray) -> np.ndarray:
    return images


async def sample(
    model: LoadedModel,
    n: int,
    seed: int,
    limits: Limits,
    temperature: float | None = None,
    truncation: float | None = None,
    finish: ImageFinish = _images,
    autoregressive_limiter: anyio.CapacityLimiter | None = None,
    label: LabelInput = None,
) -> Any:
    """(n, C, H, W) images in [0, 1], passed through ``finish``. A conditional model draws
    ``label`` (a class name or index), or each image's class from the seed if it is None."""
    card, family = ready(model, Operation.SAMPLE)
    check_knob(card, family, "temperature", temperature)
    check_knob(card, family, "truncation", truncation)
    limit = limits.max_autoregressive_n if family.autoregressive else limits.max_n
    if n > limit:  # before anything is allocated for n images
        kind = "autoregressive model" if family.autoregressive else "model"
        raise LimitExceeded(f"n: must be <= {limit} for {kind} {card.name!r}")
    classes = sample_labels(card, label, n, seed)
    if family.autoregressive:

        def draw() -> Any:
            _, h, w = card.image_shape
            empty = np.zeros((n, 1, h, w), np.float32)
            nothing = np.zeros((h, w), dtype=bool)
            noise = autoregressive.pixel_noise(seed, n, h, w)
            started = time.perf_counter()
            images = autoregressive.generate(model, empty, nothing, noise, temperature or 1.0)
            model.sampling_times.record(time.perf_counter() - started, n)
            return finish(images)

        async with autoregressive_turn(card.name, autoregressive_limiter, limits):
            return await anyio.to_thread.run_sync(draw)
    z = latents(seed, n, _latent_dim(card))
    if truncation is not None:  # a Python loop per redrawn row: off the event loop
        z = await anyio.to_thread.run_sync(truncate, z, seed, truncation)
    return await _decode(model, z, finish, classes)


def sample_labels(card: ModelCard, label: LabelInput, n: int, seed: int) -> np.ndarray | None:
    """The classes ``sample`` draws for a conditional model (None for another): ``label`` for
    every image, or image i's class drawn from the seed, the same whatever n is."""
    given = labels.resolve(card, label, n)
    if given is None and labels.is_conditional(card):
        return labels.drawn(card, seed, n)
    return given


async def encode(
    model: LoadedModel, images: Sequence[Any], limits: Limits, label: LabelInput = None
) -> dict[str, np.ndarray]:
    """{"mean", "log_var"} for a VAE, {"z"} for an autoencoder: each (B, D). A conditional
    model needs each image's ``label``."""
    card, _ = ready(model, Operation.ENCODE)
    x = await anyio.to_thread.run_sync(parse_batch, card, images, limits)
    classes = labels.required(card, labels.resolve(card, label, len(x)), "encoding")
    outputs: dict[str, np.ndarray] = await model.graphs["encoder"].infer(
        _with_labels({"image": x}, classes)
    )
    return outputs


async def reconstruct(
    model: LoadedModel,
    images: Sequence[Any],
    limits: Limits,
    finish: ImageFinish = _images,
    label: LabelInput = None,
) -> tuple[Any, np.ndarray]:
    """Decode the encoder's mean (deterministic). Returns the images (through ``finish``) and,
    per image, the mean squared error between input and reconstruction on [0, 1] pixels. A
    conditional model needs each image's ``label``."""
    card, _ = ready(model, Operation.RECONSTRUCT)
    x = await anyio.to_thread.run_sync(parse_batch, card, images, limits)
    classes = labels.required(card, labels.resolve(card, label, len(x)), "reconstruction")

    def finish_with_error(recon: np.ndarray) -> tuple[Any, np.ndarray]:
        return finish(recon), ((recon - x) ** 2).reshape(len(x), -1).mean(axis=1)

    result: tuple[Any, np.ndarray] = await _decode(
        model, await _encode_latent(model, x, classes), finish_with_error, classes
    )
    return result


async def interpolate(
    model: LoadedModel,
    start: Endpoint,
    end: Endpoint,
    steps: int,
    method: Method,
    finish: ImageFinish = _images,
    label: labels.Label | None = None,
) -> tuple[Any, np.ndarray]:
    """Decode ``steps`` latents from start to end (both included). Returns images (through
    ``finish``) and latents. A conditional model needs the ``label`` of the whole path."""
    card, _ = ready(model, Operation.INTERPOLATE)
    classes = labels.required(card, labels.resolve(card, label, 1), "an interpolation")
    a = await _endpoint_latent(model, card, start, "start", classes)
    b = await _endpoint_latent(model, card, end, "end", classes)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    z = slerp(a, b, t) if method == "slerp" else lerp(a, b, t)
    return await _decode(model, z, finish, _repeat(classes, steps)), z


@dataclass(frozen=True)
class Traversal:
    images: Any
    """The decoded strip, through ``finish``."""
    latents: np.ndarray
    values: np.ndarray
    label: int | None
    """The class a conditional model decoded with."""


async def traverse(
    model: LoadedModel,
    base: Endpoint,
    dim: int,
    span: tuple[float, float],
    steps: int,
    finish: ImageFinish = _images,
    label: labels.Label | None = None,
) -> Traversal:
    """Set latent ``dim`` of the base latent (an image's posterior mean, a latent, or a seed's
    prior draw) to ``steps`` values evenly spaced over ``span``, both ends included, and decode.
    A conditional model draws with ``label``; from a seed without one, with the class /sample
    draws for that seed."""
    card, _ = ready(model, Operation.TRAVERSE)
    size = _latent_dim(card)
    if not 0 <= dim < size:
        raise InvalidInput(f"dim: must be 0 to {size - 1} for model {card.name!r}, got {dim}")
    low, high = span
    if not (math.isfinite(low) and math.isfinite(high)) or low == high:
        raise InvalidInput(f"range: two different finite values expected, got [{low}, {high}]")
    classes = labels.resolve(card, label, 1)
    if classes is None and labels.is_conditional(card) and base.seed is not None:
        classes = labels.drawn(card, base.seed, 1)
    classes = labels.required(card, classes, "a traversal from an image or a latent")
    values = np.linspace(low, high, steps, dtype=np.float32)
    z = np.repeat((await _endpoint_latent(model, card, base, "", classes))[None], steps, 0)
    z[:, dim] = values
    images = await _decode(model, z, finish, _repeat(classes, steps))
    return Traversal(images, z, values, None if classes is None else int(classes[0]))


@asynccontextmanager
async def autoregressive_turn(
    name: str, limiter: anyio.CapacityLimiter | None, limits: Limits
) -> AsyncIterator[None]:
    """Wait for a free autoregressive slot in a bounded queue, for a bounded time; Overloaded
    when the queue is full or the wait too long."""
    if limiter is None:
        yield
        return
    waiting = limiter.statistics().tasks_waiting
    if waiting >= limits.queue_limit:
        raise Overloaded(
            f"{name}: {waiting} autoregressive samplings are waiting; retry later",
            float(max(1, waiting)),
        )
    with anyio.move_on_after(limits.queue_timeout or math.inf) as wait:
        await limiter.acquire()
    if wait.cancelled_caught:
        raise Overloaded(
            f"{name}: waited more than {limits.queue_timeout:g} s for an autoregressive "
            "sampling slot; retry later",
            float(max(1, limiter.statistics().tasks_waiting)),
        )
    try:
        yield
    finally:
        limiter.release()


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return ((1.0 - t)[:, None] * a + t[:, None] * b).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    if norms < 1e-12:
        return lerp(a, b, t)
    omega = np.arccos(np.clip(np.dot(a, b) / norms, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        return lerp(a, b, t)
    wa = np.sin((1.0 - t) * omega) / np.sin(omega)
    wb = np.sin(t * omega) / np.sin(omega)
    return (wa[:, None] * a + wb[:, None] * b).astype(np.float32)


def ready(model: LoadedModel, operation: Operation) -> tuple[ModelCard, Family]:
    """The card and family of a ready model that can do ``operation``; UnsupportedOperation
    saying why otherwise."""
    card = model.ready_card
    family = FAMILIES[card.family]
    if operation not in family.operations:
        why = family.why_not.get(operation, "not supported by its family")
        raise UnsupportedOperation(f"model {card.name!r} cannot {operation}: {why}")
    return card, family


def check_knob(card: ModelCard, family: Family, knob: str, value: float | None) -> None:
    if value is not None and knob not in family.knobs:
        where = ", ".join(name for name, f in FAMILIES.items() if knob in f.knobs)
        raise InvalidInput(
            f"{knob}: applies only to {where} models; {card.name!r} is a {card.family}"
        )


def _latent_dim(card: ModelCard) -> int:
    if card.latent_dim is None:
        raise UnsupportedOperation(f"model {card.name!r} has no latent space")
    return card.latent_dim


def parse_batch(card: ModelCard, images: Sequence[Any], limits: Limits) -> np.ndarray:
    if not images:
        raise InvalidInput("images: give at least one image")
    if len(images) > limits.max_images:
        raise LimitExceeded(
            f"images: at most {limits.max_images} images per request, got {len(images)}"
        )
    return parse_images(images, card.image_shape, "images")


async def _encode_latent(
    model: LoadedModel, x: np.ndarray, classes: np.ndarray | None = None
) -> np.ndarray:
    out = await model.graphs["encoder"].infer(_with_labels({"image": x}, classes))
    latent: np.ndarray = out["mean"] if "mean" in out else out["z"]
    return latent


async def _decode(
    model: LoadedModel, z: np.ndarray, finish: ImageFinish, classes: np.ndarray | None = None
) -> Any:
    graph = model.graphs.get("decoder") or model.graphs["generator"]
    z = np.ascontiguousarray(z, dtype=np.float32)
    feeds = _with_labels({"z": z}, classes)
    return await graph.infer(feeds, lambda outputs: finish(outputs["image"]))


def _with_labels(feeds: dict[str, np.ndarray], classes: np.ndarray | None) -> dict[str, np.ndarray]:
    """The feeds of a conditional model's graph carry each row's class as ``label``."""
    return feeds if classes is None else {**feeds, "label": classes}


def _repeat(classes: np.ndarray | None, n: int) -> np.ndarray | None:
    return None if classes is None else np.repeat(classes[:1], n)


async def _endpoint_latent(
    model: LoadedModel,
    card: ModelCard,
    end: Endpoint,
    field: str,
    classes: np.ndarray | None = None,
) -> np.ndarray:
    """``field`` prefixes the error messages: "start", "end", or "" for top-level fields."""
    family = FAMILIES[card.family]
    dim = _latent_dim(card)
    image, latent, seed = (
        f"{field}.{part}" if field else part for part in ("image", "latent", "seed")
    )
    if end.image is not None:
        if not family.has_encoder:
            raise UnsupportedOperation(
                f"{image}: model {card.name!r} ({card.family}) has no encoder, "
                "so give a latent or a seed"
            )
        x = await anyio.to_thread.run_sync(parse_image, end.image, card.image_shape, image)
        return (await _encode_latent(model, x[None], _repeat(classes, 1)))[0]
    if end.latent is not None:
        z = np.asarray(end.latent, dtype=np.float32)
        if z.shape != (dim,):
            raise InvalidInput(
                f"{latent}: expected {dim} values for model {card.name!r}, got {z.size}"
            )
        if not np.isfinite(z).all():
            raise InvalidInput(f"{latent}: contains NaN or infinite values")
        return z
    if end.seed is None:
        raise InvalidInput(f"{field or 'body'}: give exactly one of image, latent or seed")
    if Operation.SAMPLE not in family.operations:
        raise UnsupportedOperation(
            f"{seed}: model {card.name!r} ({card.family}) has no prior, so a seed means "
            "nothing; give an image or a latent"
        )
    return latents(end.seed, 1, dim)[0]


def sample_naive(model: LoadedModel, n: int, seed: int, temperature: float = 1.0) -> np.ndarray:
    """One full pass of the pixel graph per pixel: the reference the fast sampler must equal
    (tests and bench/ use it; the service never does)."""
    _, h, w = model.ready_card.image_shape
    empty = np.zeros((n, 1, h, w), np.float32)
    nothing = np.zeros((h, w), dtype=bool)
    noise = autoregressive.pixel_noise(seed, n, h, w)
    return autoregressive.generate_naive(model, empty, nothing, noise, temperature)

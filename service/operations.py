"""sample, encode, reconstruct and interpolate, per family, on numpy arrays. No HTTP here."""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import anyio.to_thread
import numpy as np

from service.config import Settings
from service.errors import InvalidInput, LimitExceeded, Overloaded, UnsupportedOperation
from service.families import FAMILIES, Family, Operation
from service.imaging import parse_image, parse_images
from service.likelihood import sample_pixel
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

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        autoregressive = min(settings.max_autoregressive_n, settings.max_n)
        return cls(
            settings.max_n,
            autoregressive,
            settings.max_images,
            settings.batch_queue_limit,
            settings.queue_timeout_ms / 1000,
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
) -> Any:
    """(n, C, H, W) images in [0, 1], passed through ``finish``."""
    card, family = _ready(model, Operation.SAMPLE)
    _check_knob(card, family, "temperature", temperature)
    _check_knob(card, family, "truncation", truncation)
    limit = limits.max_autoregressive_n if family.autoregressive else limits.max_n
    if n > limit:
        kind = "autoregressive model" if family.autoregressive else "model"
        raise LimitExceeded(f"n: must be <= {limit} for {kind} {card.name!r}")
    if family.autoregressive:

        def draw() -> Any:
            return finish(_sample_autoregressive(model, card, n, seed, temperature or 1.0))

        async with _turn(card.name, autoregressive_limiter, limits):
            return await anyio.to_thread.run_sync(draw)
    z = latents(seed, n, _latent_dim(card))
    if truncation is not None:
        z = truncate(z, seed, truncation)
    return await _decode(model, z, finish)


async def encode(
    model: LoadedModel, images: Sequence[Any], limits: Limits
) -> dict[str, np.ndarray]:
    """{"mean", "log_var"} for a VAE, {"z"} for an autoencoder: each (B, D)."""
    card, _ = _ready(model, Operation.ENCODE)
    x = await anyio.to_thread.run_sync(_parse_batch, card, images, limits)
    outputs: dict[str, np.ndarray] = await model.graphs["encoder"].infer({"image": x})
    return outputs


async def reconstruct(
    model: LoadedModel, images: Sequence[Any], limits: Limits, finish: ImageFinish = _images
) -> tuple[Any, np.ndarray]:
    """Decode the encoder's mean (deterministic). Returns the images (through ``finish``) and,
    per image, the mean squared error between input and reconstruction on [0, 1] pixels."""
    card, _ = _ready(model, Operation.RECONSTRUCT)
    x = await anyio.to_thread.run_sync(_parse_batch, card, images, limits)

    def finish_with_error(recon: np.ndarray) -> tuple[Any, np.ndarray]:
        return finish(recon), ((recon - x) ** 2).reshape(len(x), -1).mean(axis=1)

    result: tuple[Any, np.ndarray] = await _decode(
        model, await _encode_latent(model, x), finish_with_error
    )
    return result


async def interpolate(
    model: LoadedModel,
    start: Endpoint,
    end: Endpoint,
    steps: int,
    method: Method,
    finish: ImageFinish = _images,
) -> tuple[Any, np.ndarray]:
    """Decode ``steps`` latents from start to end (both included). Returns images (through
    ``finish``) and latents."""
    card, _ = _ready(model, Operation.INTERPOLATE)
    a = await _endpoint_latent(model, card, start, "start")
    b = await _endpoint_latent(model, card, end, "end")
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    z = slerp(a, b, t) if method == "slerp" else lerp(a, b, t)
    return await _decode(model, z, finish), z


@asynccontextmanager
async def _turn(
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


def _ready(model: LoadedModel, operation: Operation) -> tuple[ModelCard, Family]:
    card = model.ready_card
    family = FAMILIES[card.family]
    if operation not in family.operations:
        why = family.why_not.get(operation, "not supported by its family")
        raise UnsupportedOperation(f"model {card.name!r} cannot {operation}: {why}")
    return card, family


def _check_knob(card: ModelCard, family: Family, knob: str, value: float | None) -> None:
    if value is not None and knob not in family.knobs:
        where = ", ".join(name for name, f in FAMILIES.items() if knob in f.knobs)
        raise InvalidInput(
            f"{knob}: applies only to {where} models; {card.name!r} is a {card.family}"
        )


def _latent_dim(card: ModelCard) -> int:
    if card.latent_dim is None:
        raise UnsupportedOperation(f"model {card.name!r} has no latent space")
    return card.latent_dim


def _parse_batch(card: ModelCard, images: Sequence[Any], limits: Limits) -> np.ndarray:
    if not images:
        raise InvalidInput("images: give at least one image")
    if len(images) > limits.max_images:
        raise LimitExceeded(
            f"images: at most {limits.max_images} images per request, got {len(images)}"
        )
    return parse_images(images, card.image_shape, "images")


async def _encode_latent(model: LoadedModel, x: np.ndarray) -> np.ndarray:
    out = await model.graphs["encoder"].infer({"image": x})
    latent: np.ndarray = out["mean"] if "mean" in out else out["z"]
    return latent


async def _decode(model: LoadedModel, z: np.ndarray, finish: ImageFinish) -> Any:
    graph = model.graphs.get("decoder") or model.graphs["generator"]
    z = np.ascontiguousarray(z, dtype=np.float32)
    return await graph.infer({"z": z}, lambda outputs: finish(outputs["image"]))


async def _endpoint_latent(
    model: LoadedModel, card: ModelCard, end: Endpoint, field: str
) -> np.ndarray:
    family = FAMILIES[card.family]
    dim = _latent_dim(card)
    if end.image is not None:
        if not family.has_encoder:
            raise UnsupportedOperation(
                f"{field}.image: model {card.name!r} ({card.family}) has no encoder, "
                "so an interpolation end must be a latent or a seed"
            )
        x = await anyio.to_thread.run_sync(
            parse_image, end.image, card.image_shape, f"{field}.image"
        )
        return (await _encode_latent(model, x[None]))[0]
    if end.latent is not None:
        z = np.asarray(end.latent, dtype=np.float32)
        if z.shape != (dim,):
            raise InvalidInput(
                f"{field}.latent: expected {dim} values for model {card.name!r}, got {z.size}"
            )
        if not np.isfinite(z).all():
            raise InvalidInput(f"{field}.latent: contains NaN or infinite values")
        return z
    if end.seed is None:
        raise InvalidInput(f"{field}: give exactly one of image, latent or seed")
    if Operation.SAMPLE not in family.operations:
        raise UnsupportedOperation(
            f"{field}.seed: model {card.name!r} ({card.family}) has no prior, so a seed means "
            "nothing; give an image or a latent"
        )
    return latents(end.seed, 1, dim)[0]


def _sample_autoregressive(
    model: LoadedModel, card: ModelCard, n: int, seed: int, temperature: float
) -> np.ndarray:
    """Pixel by pixel in raster order, with the card's exact fast sampler when it has one."""
    _, h, w = card.image_shape
    assert card.likelihood is not None  # the registry refuses a PixelCNN card without one
    k = card.likelihood.components
    noise = _pixel_noise(seed, n, h, w)
    x = np.zeros((n, 1, h, w), dtype=np.float32)
    if card.sampler is not None and {"context", "row"} <= model.graphs.keys():
        rows, cols = card.sampler.context_rows, card.sampler.row_columns
        context, row = model.graphs["context"], model.graphs["row"]
        for i in range(h):
            window = np.ascontiguousarray(x[:, :, max(0, i - rows + 1) : i + 1])
            links = context.run({"image": window})["links"]  # (n, L*2c, 1, w): row i's context
            for j in range(w):
                left = max(0, j - cols + 1)
                feeds = {
                    "image": np.ascontiguousarray(x[:, :, i : i + 1, left : j + 1]),
                    "links": np.ascontiguousarray(links[..., left : j + 1]),
                }
                params = row.run(feeds)["params"][:, :, 0, -1]
                x[:, 0, i, j] = sample_pixel(params, noise[:, i, j], temperature, k)
        return x
    graph = model.graphs["pixelcnn"]
    for i in range(h):  # no fast sampler: run on rows 0..i only, exact and half the work
        for j in range(w):
            params = graph.run({"image": np.ascontiguousarray(x[:, :, : i + 1])})["params"]
            x[:, 0, i, j] = sample_pixel(params[:, :, i, j], noise[:, i, j], temperature, k)
    return x


def sample_naive(model: LoadedModel, n: int, seed: int, temperature: float = 1.0) -> np.ndarray:
    """One full pass of the PixelCNN per pixel: the reference the fast sampler must equal
    (tests and bench/ use it; the service never does)."""
    card = model.ready_card
    _, h, w = card.image_shape
    assert card.likelihood is not None
    graph, k = model.graphs["pixelcnn"], card.likelihood.components
    noise = _pixel_noise(seed, n, h, w)
    x = np.zeros((n, 1, h, w), dtype=np.float32)
    for i in range(h):
        for j in range(w):
            params = graph.run({"image": x})["params"]
            x[:, 0, i, j] = sample_pixel(params[:, :, i, j], noise[:, i, j], temperature, k)
    return x


def _pixel_noise(seed: int, n: int, h: int, w: int) -> np.ndarray:
    """Two uniforms per pixel (component, then value); image i is the same whatever n is."""
    return np.random.default_rng(seed).random((n, h, w, 2))

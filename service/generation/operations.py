"""The operations, per family, on numpy arrays; no HTTP here. Each takes a ready model and one
frozen spec, and returns one ``Result``. An operation that makes images passes them (B, C, H,
W) in [0, 1] through ``finish`` in the graph's worker thread (e.g. to encode PNGs), and the
result's payload is what ``finish`` returned.

Scoring is in ``scoring``, completion in ``completion``; ``Operations`` puts all seven behind
one object, bound to the limits they enforce and the autoregressive slots they share.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from modelstore.card import ModelCard
from service.errors import InvalidInput, LimitExceeded, UnsupportedOperation
from service.generation import autoregressive, completion, labels, scoring
from service.generation.autoregressive import RowWatch
from service.generation.checks import check_knob, latent_dim, parse_batch, ready
from service.generation.imaging import parse_image
from service.generation.labels import LabelInput
from service.generation.scoring import Scores
from service.generation.specs import (
    CompleteSpec,
    EncodeSpec,
    Endpoint,
    InterpolateSpec,
    Limits,
    ReconstructSpec,
    Result,
    SampleSpec,
    ScoreSpec,
    TraverseSpec,
)
from service.registry.families import FAMILIES, Operation
from service.registry.registry import LoadedModel
from service.runtime.slots import Slots

ImageFinish = Callable[[np.ndarray], Any]
"""Applied to a request's (B, C, H, W) images in the worker thread, e.g. PNG encoding."""


def images_as_they_are(images: np.ndarray) -> np.ndarray:
    return images


class Operations:
    """The seven operations, bound to the limits they enforce and to the slots that bound how
    many autoregressive samplings run at once (None: no bound)."""

    def __init__(self, limits: Limits | None = None, slots: Slots | None = None) -> None:
        self.limits = limits or Limits()
        self.slots = slots

    async def sample(
        self,
        model: LoadedModel,
        spec: SampleSpec,
        finish: ImageFinish = images_as_they_are,
        watch: RowWatch | None = None,
    ) -> Result[Any]:
        """``n`` images. Image i of a seed is the same whatever n is. A conditional model
        draws ``label`` (a class name or index), or each image's class from the seed. A
        pixel-by-pixel family reports each row to ``watch``, and stops there when told."""
        card, family = ready(model, Operation.SAMPLE)
        check_knob(card, family, "temperature", spec.temperature)
        check_knob(card, family, "truncation", spec.truncation)
        n, limits = spec.n, self.limits
        limit = limits.max_autoregressive_n if family.autoregressive else limits.max_n
        if n > limit:  # before anything is allocated for n images
            kind = "autoregressive model" if family.autoregressive else "model"
            raise LimitExceeded(f"n: must be <= {limit} for {kind} {card.name!r}")
        seed = new_seed() if spec.seed is None else spec.seed
        classes = sample_labels(card, spec.label, n, seed)
        if family.autoregressive:
            temperature, rows = spec.temperature or 1.0, watch or RowWatch()

            def draw() -> Any:
                _, h, w = card.image_shape
                empty = np.zeros((n, 1, h, w), np.float32)
                nothing = np.zeros((h, w), dtype=bool)
                noise = autoregressive.pixel_noise(seed, n, h, w)
                started = time.perf_counter()
                images = autoregressive.generate(model, empty, nothing, noise, temperature, rows)
                model.sampling_times.record(time.perf_counter() - started, n)
                return finish(images)

            rows.accepted(card.image_shape[1])
            async with autoregressive.turn(card.name, self.slots, limits):
                payload = await autoregressive.run_watched(draw, rows)
        else:
            z = latents(seed, n, latent_dim(card))
            if spec.truncation is not None:  # a Python loop per redrawn row: off the loop
                z = await anyio.to_thread.run_sync(truncate, z, seed, spec.truncation)
            payload = await _decode(model, z, finish, classes)
        return _result(card, payload, n, seed=seed, classes=classes)

    async def encode(self, model: LoadedModel, spec: EncodeSpec) -> Result[dict[str, np.ndarray]]:
        """{"mean", "log_var"} for a VAE, {"z"} for an autoencoder: each (B, D). A conditional
        model needs each image's ``label``."""
        card, _ = ready(model, Operation.ENCODE)
        x = await anyio.to_thread.run_sync(parse_batch, card, spec.images, self.limits)
        classes = labels.required(card, labels.resolve(card, spec.label, len(x)), "encoding")
        outputs: dict[str, np.ndarray] = await model.graphs["encoder"].infer(
            _with_labels({"image": x}, classes)
        )
        return Result(card.name, card.version, outputs)

    async def reconstruct(
        self, model: LoadedModel, spec: ReconstructSpec, finish: ImageFinish = images_as_they_are
    ) -> Result[Any]:
        """Decode the encoder's mean (deterministic). ``arrays["error"]`` is, per image, the
        mean squared error between input and reconstruction on [0, 1] pixels. A conditional
        model needs each image's ``label``."""
        card, _ = ready(model, Operation.RECONSTRUCT)
        x = await anyio.to_thread.run_sync(parse_batch, card, spec.images, self.limits)
        classes = labels.required(card, labels.resolve(card, spec.label, len(x)), "reconstruction")

        def finish_with_error(recon: np.ndarray) -> tuple[Any, np.ndarray]:
            return finish(recon), ((recon - x) ** 2).reshape(len(x), -1).mean(axis=1)

        payload, error = await _decode(
            model, await _encode_latent(model, x, classes), finish_with_error, classes
        )
        return _result(card, payload, len(x), arrays={"error": error})

    async def interpolate(
        self, model: LoadedModel, spec: InterpolateSpec, finish: ImageFinish = images_as_they_are
    ) -> Result[Any]:
        """Decode ``steps`` latents from start to end (both included); ``arrays["latents"]``
        holds them. A conditional model needs the ``label`` of the whole path."""
        card, _ = ready(model, Operation.INTERPOLATE)
        classes = labels.required(card, labels.resolve(card, spec.label, 1), "an interpolation")
        a = await _endpoint_latent(model, card, spec.start, "start", classes)
        b = await _endpoint_latent(model, card, spec.end, "end", classes)
        t = np.linspace(0.0, 1.0, spec.steps, dtype=np.float32)
        z = slerp(a, b, t) if spec.method == "slerp" else lerp(a, b, t)
        payload = await _decode(model, z, finish, _repeat(classes, spec.steps))
        return _result(card, payload, spec.steps, arrays={"latents": z})

    async def traverse(
        self, model: LoadedModel, spec: TraverseSpec, finish: ImageFinish = images_as_they_are
    ) -> Result[Any]:
        """Set latent ``dim`` of the base latent (an image's posterior mean, a latent, or a
        seed's prior draw; a seed is drawn when the base gives none) to ``steps`` values evenly
        spaced over ``span``, both ends included, and decode. ``arrays`` holds the latents and
        the values; the result's one label is the class a conditional model decoded with: the
        ``label``, or from a seed without one, the class /sample draws for that seed."""
        card, _ = ready(model, Operation.TRAVERSE)
        size = latent_dim(card)
        dim, steps = spec.dim, spec.steps
        if not 0 <= dim < size:
            raise InvalidInput(f"dim: must be 0 to {size - 1} for model {card.name!r}, got {dim}")
        low, high = spec.span
        if not (math.isfinite(low) and math.isfinite(high)) or low == high:
            raise InvalidInput(f"range: two different finite values expected, got [{low}, {high}]")
        base = spec.base
        if base.image is None and base.latent is None and base.seed is None:
            base = Endpoint(seed=new_seed())
        classes = labels.resolve(card, spec.label, 1)
        if classes is None and labels.is_conditional(card) and base.seed is not None:
            classes = labels.drawn(card, base.seed, 1)
        classes = labels.required(card, classes, "a traversal from an image or a latent")
        values = np.linspace(low, high, steps, dtype=np.float32)
        z = np.repeat((await _endpoint_latent(model, card, base, "", classes))[None], steps, 0)
        z[:, dim] = values
        payload = await _decode(model, z, finish, _repeat(classes, steps))
        arrays = {"latents": z, "values": values}
        return _result(card, payload, steps, seed=base.seed, classes=classes, arrays=arrays)

    async def score(self, model: LoadedModel, spec: ScoreSpec) -> Result[Scores]:
        """Bits/dim of each image (``scoring.score``); the seed is the importance samples'."""
        seed = new_seed() if spec.seed is None else spec.seed
        scores = await scoring.score(model, spec, seed, self.limits)
        card = model.ready_card
        names = None if scores.labels is None else labels.label_names(card, scores.labels)
        return Result(card.name, card.version, scores, seed=scores.seed, labels=names)

    async def complete(
        self,
        model: LoadedModel,
        spec: CompleteSpec,
        finish: ImageFinish = images_as_they_are,
        watch: RowWatch | None = None,
    ) -> Result[Any]:
        """(B x samples, C, H, W) completions, image-major (the samples of image 0 first).
        Completion i of every image uses seed + i (``completion.completion_seeds``); each
        row drawn is reported to ``watch``, which can stop it there."""
        seed = new_seed() if spec.seed is None else spec.seed
        payload, count = await completion.complete(
            model, spec, seed, self.limits, finish, self.slots, watch or RowWatch()
        )
        return _result(model.ready_card, payload, count, seed=seed)


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


def sample_labels(card: ModelCard, label: LabelInput, n: int, seed: int) -> np.ndarray | None:
    """The classes ``sample`` draws for a conditional model (None for another): ``label`` for
    every image, or image i's class drawn from the seed, the same whatever n is."""
    given = labels.resolve(card, label, n)
    if given is None and labels.is_conditional(card):
        return labels.drawn(card, seed, n)
    return given


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


def _result(
    card: ModelCard,
    payload: Any,
    count: int,
    seed: int | None = None,
    classes: np.ndarray | None = None,
    arrays: dict[str, np.ndarray] | None = None,
) -> Result[Any]:
    names = None if classes is None else labels.label_names(card, classes)
    shape = (count, *card.image_shape)
    return Result(card.name, card.version, payload, shape, seed, names, arrays or {})


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
    dim = latent_dim(card)
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

"""The operations on numpy arrays; no HTTP here. Each takes a ready model and one
frozen spec, and returns one ``Result``. An operation that makes images passes them (B, C, H,
W) in [0, 1] through ``finish`` in the graph's worker thread (e.g. to encode PNGs), and the
result's payload is what ``finish`` returned.

``Operations`` puts all seven behind one object, bound to the limits they enforce and the
autoregressive slots they share. Each checks its request, then calls the model's family
(``families``) where the families differ: how they sample, score and complete. The latent
operations (encode, reconstruct, interpolate, traverse) are the latent families' alone.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from modelstore.card import ModelCard
from service.errors import InvalidInput
from service.generation import labels
from service.generation.autoregressive import RowWatch
from service.generation.checks import latent_dim, parse_batch
from service.generation.families import (
    ImageFinish,
    check_knob,
    decode,
    encode_latent,
    family_of,
    latent_family_of,
    new_seed,
    pixel_family_of,
    required_labels,
    resolve_labels,
    sample_labels,
    with_labels,
)
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
from service.registry.families import Operation
from service.registry.registry import LoadedModel
from service.runtime.slots import Slots


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
        card, family = family_of(model, Operation.SAMPLE)
        check_knob(card, family, "temperature", spec.temperature)
        check_knob(card, family, "truncation", spec.truncation)
        family.check_n(card, spec.n, self.limits)
        seed = new_seed() if spec.seed is None else spec.seed
        classes = sample_labels(card, family, spec.label, spec.n, seed)
        rows = watch or RowWatch()
        payload = await family.sample(
            model, card, spec, seed, classes, finish, rows, self.slots, self.limits
        )
        return _result(card, payload, spec.n, seed=seed, classes=classes)

    async def encode(self, model: LoadedModel, spec: EncodeSpec) -> Result[dict[str, np.ndarray]]:
        """{"mean", "log_var"} for a VAE, {"z"} for an autoencoder: each (B, D). A conditional
        model needs each image's ``label``."""
        card, family = latent_family_of(model, Operation.ENCODE)
        x = await anyio.to_thread.run_sync(parse_batch, card, spec.images, self.limits)
        given = resolve_labels(card, family, spec.label, len(x))
        classes = required_labels(card, family, given, "encoding")
        outputs: dict[str, np.ndarray] = await model.graphs["encoder"].infer(
            with_labels({"image": x}, classes)
        )
        return Result(card.name, card.version, outputs)

    async def reconstruct(
        self, model: LoadedModel, spec: ReconstructSpec, finish: ImageFinish = images_as_they_are
    ) -> Result[Any]:
        """Decode the encoder's mean (deterministic). ``arrays["error"]`` is, per image, the
        mean squared error between input and reconstruction on [0, 1] pixels. A conditional
        model needs each image's ``label``."""
        card, family = latent_family_of(model, Operation.RECONSTRUCT)
        x = await anyio.to_thread.run_sync(parse_batch, card, spec.images, self.limits)
        given = resolve_labels(card, family, spec.label, len(x))
        classes = required_labels(card, family, given, "reconstruction")

        def finish_with_error(recon: np.ndarray) -> tuple[Any, np.ndarray]:
            return finish(recon), ((recon - x) ** 2).reshape(len(x), -1).mean(axis=1)

        payload, error = await decode(
            model, await encode_latent(model, x, classes), finish_with_error, classes
        )
        return _result(card, payload, len(x), arrays={"error": error})

    async def interpolate(
        self, model: LoadedModel, spec: InterpolateSpec, finish: ImageFinish = images_as_they_are
    ) -> Result[Any]:
        """Decode ``steps`` latents from start to end (both included); ``arrays["latents"]``
        holds them. A conditional model needs the ``label`` of the whole path."""
        card, family = latent_family_of(model, Operation.INTERPOLATE)
        given = resolve_labels(card, family, spec.label, 1)
        classes = required_labels(card, family, given, "an interpolation")
        a = await family.endpoint_latent(model, card, spec.start, "start", classes)
        b = await family.endpoint_latent(model, card, spec.end, "end", classes)
        t = np.linspace(0.0, 1.0, spec.steps, dtype=np.float32)
        z = slerp(a, b, t) if spec.method == "slerp" else lerp(a, b, t)
        payload = await decode(model, z, finish, _repeat(classes, spec.steps))
        return _result(card, payload, spec.steps, arrays={"latents": z})

    async def traverse(
        self, model: LoadedModel, spec: TraverseSpec, finish: ImageFinish = images_as_they_are
    ) -> Result[Any]:
        """Set latent ``dim`` of the base latent (an image's posterior mean, a latent, or a
        seed's prior draw; a seed is drawn when the base gives none) to ``steps`` values evenly
        spaced over ``span``, both ends included, and decode. ``arrays`` holds the latents and
        the values; the result's one label is the class a conditional model decoded with: the
        ``label``, or from a seed without one, the class /sample draws for that seed."""
        card, family = latent_family_of(model, Operation.TRAVERSE)
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
        classes = resolve_labels(card, family, spec.label, 1)
        if classes is None and base.seed is not None:  # the class /sample draws for the seed
            classes = sample_labels(card, family, None, 1, base.seed)
        classes = required_labels(card, family, classes, "a traversal from an image or a latent")
        values = np.linspace(low, high, steps, dtype=np.float32)
        z = np.repeat(
            (await family.endpoint_latent(model, card, base, "", classes))[None], steps, 0
        )
        z[:, dim] = values
        payload = await decode(model, z, finish, _repeat(classes, steps))
        arrays = {"latents": z, "values": values}
        return _result(card, payload, steps, seed=base.seed, classes=classes, arrays=arrays)

    async def score(self, model: LoadedModel, spec: ScoreSpec) -> Result[Scores]:
        """Bits/dim of each image (``score``); the seed is the importance samples'."""
        seed = new_seed() if spec.seed is None else spec.seed
        scores = await score(model, spec, seed, self.limits)
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
        _, family = pixel_family_of(model, Operation.COMPLETE)
        payload, count = await family.complete(
            model, spec, seed, self.limits, finish, self.slots, watch or RowWatch()
        )
        return _result(model.ready_card, payload, count, seed=seed)


async def score(model: LoadedModel, spec: ScoreSpec, seed: int, limits: Limits) -> Scores:
    """Bits/dim of each image, by the model's family: exact for PixelCNN and PixelRNN, the
    importance-weighted bound for the VAEs. ``k`` and ``seed`` apply to the VAEs only: the
    same image, k and seed always give the same score, whichever images it comes with."""
    _, family = family_of(model, Operation.SCORE)
    return await family.score(model, spec, seed, limits)


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


def _repeat(classes: np.ndarray | None, n: int) -> np.ndarray | None:
    return None if classes is None else np.repeat(classes[:1], n)

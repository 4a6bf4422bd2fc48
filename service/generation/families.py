"""The families the service serves, one class per kind, and their table. A new family is one row
of ``FAMILIES``; a new kind of family, one class here.

- ``LatentFamily`` (VAE, CVAE, autoencoder, DCGAN, WGAN-GP): a latent space and a decoder (or
  generator), most with an encoder. It samples by decoding latents drawn from a seed, in
  batches, and scores with the importance-weighted bound (the VAEs).
- ``PixelFamily`` (PixelCNN, PixelRNN): one graph that gives every pixel's mixture from the
  pixels above and to the left. It samples and completes pixel by pixel, one run at a time
  on every core, and scores exactly.

Each knows its graphs, the operations it serves and why it refuses the others, its knobs, how
its card is checked (the ``Family`` of ``service/registry/families.py``, what the loader needs),
and how it samples, scores and completes. ``Operations`` checks a request, then calls the
family of the model it names."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
import anyio.to_thread
import numpy as np

from modelstore.card import ModelCard
from service.errors import InvalidInput, LimitExceeded, ServiceError, UnsupportedOperation
from service.generation import autoregressive, labels
from service.generation.autoregressive import RowWatch
from service.generation.checks import latent_dim, parse_batch, ready
from service.generation.completion import completion_seeds, kept_pixels
from service.generation.imaging import parse_image
from service.generation.likelihood import (
    bits_per_dim,
    mixture_log_prob,
    params_per_component,
    quantize,
)
from service.generation.scoring import DEFAULT_K, Scores, iwae, png_bits_per_dim
from service.generation.specs import CompleteSpec, Endpoint, Limits, SampleSpec, ScoreSpec
from service.registry.families import Family, Operation
from service.registry.registry import LoadedModel
from service.runtime.slots import Slots

ImageFinish = Callable[[np.ndarray], Any]
"""Applied to a request's (B, C, H, W) images in the worker thread, e.g. PNG encoding."""


@dataclass(frozen=True)
class LatentFamily(Family):
    """A latent space and a decoder (or generator): sample, and, with an encoder, encode,
    reconstruct, interpolate from images, traverse and score (the VAEs)."""

    @property
    def has_encoder(self) -> bool:
        return "encoder" in self.graphs

    def check_n(self, card: ModelCard, n: int, limits: Limits) -> None:
        if n > limits.max_n:  # before anything is allocated for n images
            raise LimitExceeded(f"n: must be <= {limits.max_n} for model {card.name!r}")

    async def sample(
        self,
        model: LoadedModel,
        card: ModelCard,
        spec: SampleSpec,
        seed: int,
        classes: np.ndarray | None,
        finish: ImageFinish,
        watch: RowWatch,
        slots: Slots | None,
        limits: Limits,
    ) -> Any:
        """``finish`` of the images decoded from row i of the seed's latents (truncated when
        asked), in the graph's batches."""
        z = latents(seed, spec.n, latent_dim(card))
        if spec.truncation is not None:  # a Python loop per redrawn row: off the loop
            z = await anyio.to_thread.run_sync(truncate, z, seed, spec.truncation)
        return await decode(model, z, finish, classes)

    async def score(self, model: LoadedModel, spec: ScoreSpec, seed: int, limits: Limits) -> Scores:
        """The importance-weighted bound with ``k`` samples; a conditional model scores under
        each image's ``label``, or without one under the uniform mixture of its classes,
        log p(x) = log mean_y p(x | y)."""
        card = model.ready_card
        x = quantize(await anyio.to_thread.run_sync(parse_batch, card, spec.images, limits))
        png = await anyio.to_thread.run_sync(png_bits_per_dim, x)
        k = min(DEFAULT_K, limits.max_iwae_k) if spec.k is None else spec.k
        if k > limits.max_iwae_k:
            raise LimitExceeded(f"k: must be <= {limits.max_iwae_k} (SERVICE_MAX_IWAE_K), got {k}")
        given = resolve_labels(card, self, spec.label, len(x))
        mixed = given is None and self.conditional
        classes = len(labels.class_names(card)) if mixed else 1
        cost = len(x) * k * classes
        if cost > limits.max_iwae_samples:
            times = f" x {classes} classes" if mixed else ""
            raise LimitExceeded(
                f"images x k: at most {limits.max_iwae_samples} importance samples per request "
                f"(SERVICE_MAX_IWAE_SAMPLES), got {len(x)} x {k}{times} = {cost}; send fewer "
                "images or a smaller k" + (", or a label" if mixed else "")
            )
        if not mixed:
            log_p = await iwae(model, x, k, seed, given)
        else:
            per_class = [
                await iwae(model, x, k, seed, np.full(len(x), c, np.int64)) for c in range(classes)
            ]
            log_p = np.logaddexp.reduce(np.stack(per_class), axis=0) - math.log(classes)
        dims = int(np.prod(card.image_shape))
        return Scores("iwae", log_p, bits_per_dim(log_p, dims), png, k, seed, given)

    async def endpoint_latent(
        self,
        model: LoadedModel,
        card: ModelCard,
        end: Endpoint,
        field: str,
        classes: np.ndarray | None = None,
    ) -> np.ndarray:
        """The latent an interpolation's end or a traversal's base gives: an image's posterior
        mean, a latent, or row 0 of a seed's latents. ``field`` prefixes the error messages:
        "start", "end", or "" for top-level fields."""
        dim = latent_dim(card)
        image, latent, seed = (
            f"{field}.{part}" if field else part for part in ("image", "latent", "seed")
        )
        if end.image is not None:
            if not self.has_encoder:
                raise UnsupportedOperation(
                    f"{image}: model {card.name!r} ({card.family}) has no encoder, "
                    "so give a latent or a seed"
                )
            x = await anyio.to_thread.run_sync(parse_image, end.image, card.image_shape, image)
            first = None if classes is None else classes[:1]
            return (await encode_latent(model, x[None], first))[0]
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
        if Operation.SAMPLE not in self.operations:
            raise UnsupportedOperation(
                f"{seed}: model {card.name!r} ({card.family}) has no prior, so a seed means "
                "nothing; give an image or a latent"
            )
        return latents(end.seed, 1, dim)[0]


@dataclass(frozen=True)
class PixelFamily(Family):
    """One graph that gives every pixel's mixture (``pixel_graph``): sample and complete pixel
    by pixel, score exactly."""

    autoregressive: ClassVar[bool] = True
    channels: ClassVar[tuple[int, ...]] = (1, 3)
    """Colour pixels are drawn R, then G given R, then B given R and G."""

    @property
    def graph(self) -> str:
        assert self.pixel_graph is not None
        return self.pixel_graph

    def check_card(self, card: ModelCard) -> None:
        """The card must declare the mixture its params channels hold (docs/model-store.md)."""
        super().check_card(card)
        likelihood = card.likelihood
        if likelihood is None or likelihood.kind != "discretized_logistic_mixture":
            raise ServiceError(
                f"{card.name}: a {card.family} card needs "
                "likelihood.kind 'discretized_logistic_mixture'"
            )
        image_channels = card.image_shape[0]
        declared = likelihood.channels
        if declared != image_channels:
            raise ServiceError(
                f"{card.name}: likelihood.channels is {declared}, but its images have "
                f"{image_channels} channels"
            )
        if image_channels == 3 and not likelihood.coefficients:
            raise ServiceError(
                f"{card.name}: a colour {card.family} card needs likelihood.coefficients true "
                "(R, then G given R, then B given R and G)"
            )
        per = params_per_component(image_channels)
        channels = card.graphs[self.graph].outputs[0].shape[1]
        if channels not in (-1, per * likelihood.components):
            raise ServiceError(
                f"{card.name}: params has {channels} channels, expected {per} x "
                f"{likelihood.components}"
            )

    def graph_options(self, batched: Any, one_at_a_time: Any) -> Any:
        return one_at_a_time

    def check_n(self, card: ModelCard, n: int, limits: Limits) -> None:
        limit = limits.max_autoregressive_n
        if n > limit:
            raise LimitExceeded(f"n: must be <= {limit} for autoregressive model {card.name!r}")

    async def sample(
        self,
        model: LoadedModel,
        card: ModelCard,
        spec: SampleSpec,
        seed: int,
        classes: np.ndarray | None,
        finish: ImageFinish,
        watch: RowWatch,
        slots: Slots | None,
        limits: Limits,
    ) -> Any:
        """``finish`` of ``n`` images drawn pixel by pixel in a worker thread, once an
        autoregressive slot is free; each row is reported to ``watch``, which can stop it."""
        n, temperature = spec.n, spec.temperature or 1.0

        def draw() -> Any:
            c, h, w = card.image_shape
            empty = np.zeros((n, c, h, w), np.float32)
            nothing = np.zeros((h, w), dtype=bool)
            noise = autoregressive.pixel_noise(seed, n, h, w, c)
            started = time.perf_counter()
            images = autoregressive.generate(model, empty, nothing, noise, temperature, watch)
            model.sampling_times.record(time.perf_counter() - started, n)
            return finish(images)

        watch.accepted(card.image_shape[1])
        async with autoregressive.turn(card.name, slots, limits, n):
            return await autoregressive.run_watched(draw, watch)

    async def score(self, model: LoadedModel, spec: ScoreSpec, seed: int, limits: Limits) -> Scores:
        """Exact: one run of the pixel graph gives every pixel's mixture."""
        card = model.ready_card
        if spec.k is not None:
            raise InvalidInput(f"k: applies to the VAE families only; {card.name!r} is exact")
        x = quantize(await anyio.to_thread.run_sync(parse_batch, card, spec.images, limits))
        png = await anyio.to_thread.run_sync(png_bits_per_dim, x)
        log_p = await model.graphs[self.graph].infer(
            {"image": x}, lambda outputs: mixture_log_prob(x, outputs["params"])
        )
        return Scores("exact", log_p, bits_per_dim(log_p, int(np.prod(card.image_shape))), png)

    async def complete(
        self,
        model: LoadedModel,
        spec: CompleteSpec,
        seed: int,
        limits: Limits,
        finish: ImageFinish,
        slots: Slots | None,
        watch: RowWatch,
    ) -> tuple[Any, int]:
        """``finish`` of the (B x samples, C, H, W) completions, image-major (the samples of
        image 0 first), and how many there are. Completion i of every image uses seed + i
        (``completion.completion_seeds``)."""
        card = model.ready_card
        check_knob(card, self, "temperature", spec.temperature)
        images, samples = spec.images, spec.samples
        count = len(images) * samples
        if count > limits.max_autoregressive_n:
            raise LimitExceeded(
                f"images x samples: at most {limits.max_autoregressive_n} completions per "
                f"request for autoregressive model {card.name!r}, got {len(images)} x "
                f"{samples} = {count}"
            )
        x = quantize(await anyio.to_thread.run_sync(parse_batch, card, images, limits))
        keep = await anyio.to_thread.run_sync(kept_pixels, card, spec.given)
        c, h, w = card.image_shape
        noise = np.concatenate(
            [autoregressive.pixel_noise(s, 1, h, w, c) for s in completion_seeds(seed, samples)]
        )
        starts = np.repeat(x, samples, axis=0)  # (B S, C, H, W)
        temperature = spec.temperature or 1.0

        def draw() -> Any:
            noises = np.tile(noise, (len(x), 1, 1, 1))
            return finish(autoregressive.generate(model, starts, keep, noises, temperature, watch))

        watch.accepted(autoregressive.rows_to_generate(keep))
        async with autoregressive.turn(card.name, slots, limits, count):
            return await autoregressive.run_watched(draw, watch), count


S, E, R, INTERP = Operation.SAMPLE, Operation.ENCODE, Operation.RECONSTRUCT, Operation.INTERPOLATE
SCORE, COMPLETE, TRAVERSE = Operation.SCORE, Operation.COMPLETE, Operation.TRAVERSE
_ONLY_AUTOREGRESSIVE = "only an autoregressive model (pixelcnn, pixelrnn) completes images"
_NO_LATENT = "it has no latent space"
_GAN = LatentFamily(
    graphs=("generator",),
    operations=frozenset({S, INTERP}),
    knobs=frozenset({"truncation"}),
    why_not={
        E: "a GAN has no encoder",
        R: "a GAN has no encoder",
        SCORE: "a GAN defines no likelihood",
        COMPLETE: _ONLY_AUTOREGRESSIVE,
        TRAVERSE: "latent traversal is served for the VAE families",
    },
)
_VAE = LatentFamily(
    graphs=("encoder", "decoder"),
    operations=frozenset({S, E, R, INTERP, SCORE, TRAVERSE}),
    why_not={COMPLETE: _ONLY_AUTOREGRESSIVE},
)


def _pixel(graph: str, optional_graphs: tuple[str, ...] = ()) -> PixelFamily:
    return PixelFamily(
        graphs=(graph,),
        optional_graphs=optional_graphs,
        operations=frozenset({S, SCORE, COMPLETE}),
        knobs=frozenset({"temperature"}),
        why_not=dict.fromkeys((E, R, INTERP, TRAVERSE), _NO_LATENT),
        pixel_graph=graph,
    )


FAMILIES: dict[str, LatentFamily | PixelFamily] = {
    "vae": _VAE,
    "cvae": LatentFamily(
        graphs=_VAE.graphs, operations=_VAE.operations, why_not=_VAE.why_not, conditional=True
    ),
    "autoencoder": LatentFamily(
        graphs=("encoder", "decoder"),
        operations=frozenset({E, R, INTERP}),
        why_not={
            S: "a plain autoencoder has no prior to sample from",
            SCORE: "a plain autoencoder defines no likelihood",
            COMPLETE: _ONLY_AUTOREGRESSIVE,
            TRAVERSE: "a plain autoencoder has no prior that gives its latent axes a scale",
        },
    ),
    "dcgan": _GAN,
    "wgan-gp": _GAN,
    "pixelcnn": _pixel("pixelcnn", optional_graphs=("context", "row")),
    "pixelrnn": _pixel("pixelrnn", optional_graphs=("step",)),
}
"""Every family the service serves, by a card's ``family``."""


def family_of(
    model: LoadedModel, operation: Operation
) -> tuple[ModelCard, LatentFamily | PixelFamily]:
    """The card and family of a ready model that can do ``operation``; UnsupportedOperation
    saying why otherwise."""
    card, family = ready(model, operation)
    assert isinstance(family, LatentFamily | PixelFamily)  # the loader took it from FAMILIES
    return card, family


def pixel_family_of(model: LoadedModel, operation: Operation) -> tuple[ModelCard, PixelFamily]:
    card, family = family_of(model, operation)
    assert isinstance(family, PixelFamily)  # only they serve complete
    return card, family


def latent_family_of(model: LoadedModel, operation: Operation) -> tuple[ModelCard, LatentFamily]:
    card, family = family_of(model, operation)
    assert isinstance(family, LatentFamily)  # only they serve the latent operations
    return card, family


def check_knob(card: ModelCard, family: Family, knob: str, value: float | None) -> None:
    if value is not None and knob not in family.knobs:
        where = ", ".join(name for name, f in FAMILIES.items() if knob in f.knobs)
        raise InvalidInput(
            f"{knob}: applies only to {where} models; {card.name!r} is a {card.family}"
        )


def resolve_labels(
    card: ModelCard, family: Family, label: labels.LabelInput, n: int, field: str = "label"
) -> np.ndarray | None:
    """The (n,) int64 labels a request gives, or None if it gives none. A label for a model
    that is not class-conditional is refused, as is an unknown class."""
    if label is None:
        return None
    if not family.conditional:
        conditional = ", ".join(name for name, f in FAMILIES.items() if f.conditional)
        raise InvalidInput(
            f"{field}: model {card.name!r} ({card.family}) is not class-conditional; "
            f"a label applies only to {conditional} models"
        )
    return labels.indices(card, label, n, field)


def required_labels(
    card: ModelCard, family: Family, classes: np.ndarray | None, why: str
) -> np.ndarray | None:
    """The labels of a conditional model, which must be given here; None for another model."""
    if classes is None and family.conditional:
        raise InvalidInput(
            f"label: model {card.name!r} is class-conditional, so {why} needs a label: "
            f"one of {labels.choices(card)}"
        )
    return classes


def sample_labels(
    card: ModelCard, family: Family, label: labels.LabelInput, n: int, seed: int
) -> np.ndarray | None:
    """The classes ``sample`` draws for a conditional model (None for another): ``label`` for
    every image, or image i's class drawn from the seed, the same whatever n is."""
    given = resolve_labels(card, family, label, n)
    if given is None and family.conditional:
        return labels.drawn(card, seed, n)
    return given


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


async def decode(
    model: LoadedModel, z: np.ndarray, finish: ImageFinish, classes: np.ndarray | None = None
) -> Any:
    graph = model.graphs.get("decoder") or model.graphs["generator"]
    z = np.ascontiguousarray(z, dtype=np.float32)
    feeds = with_labels({"z": z}, classes)
    return await graph.infer(feeds, lambda outputs: finish(outputs["image"]))


async def encode_latent(
    model: LoadedModel, x: np.ndarray, classes: np.ndarray | None = None
) -> np.ndarray:
    """The encoder's latent of each image: a VAE's posterior mean, an autoencoder's z."""
    out = await model.graphs["encoder"].infer(with_labels({"image": x}, classes))
    latent: np.ndarray = out["mean"] if "mean" in out else out["z"]
    return latent


def with_labels(feeds: dict[str, np.ndarray], classes: np.ndarray | None) -> dict[str, np.ndarray]:
    """The feeds of a conditional model's graph carry each row's class as ``label``."""
    return feeds if classes is None else {**feeds, "label": classes}

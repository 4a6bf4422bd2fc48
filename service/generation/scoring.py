"""Bits per dimension for each image: exact for the autoregressive families, the importance
weighted bound (IWAE, Burda et al. 2016) for the VAE families. The likelihoods are those of
docs/model-store.md ("Pixel likelihoods"), on the image quantised to 8 bits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import anyio.to_thread
import numpy as np

from service.errors import InvalidInput, LimitExceeded
from service.generation import labels
from service.generation.checks import parse_batch, ready
from service.generation.imaging import compressed_png_size, to_uint8
from service.generation.likelihood import (
    bits_per_dim,
    logistic_log_prob,
    mixture_log_prob,
    quantize,
)
from service.generation.specs import Limits, ScoreSpec
from service.registry.families import Operation
from service.registry.registry import LoadedModel

DEFAULT_K = 100
"""Importance samples per image when a request names none (as the training's evaluation),
unless SERVICE_MAX_IWAE_K is lower."""
DECODER_ROWS = 1024
"""Latents decoded per run while scoring a VAE: bounds the memory, whatever B x k is."""
_LOG_2PI = math.log(2.0 * math.pi)

Kind = Literal["exact", "iwae"]


@dataclass(frozen=True)
class Scores:
    kind: Kind
    log_likelihood: np.ndarray
    """(B,) nats: log p(x) when exact, the IWAE lower bound on it otherwise."""
    bits_per_dim: np.ndarray
    """(B,) -log p(x) / (C H W ln 2): exact, or an upper bound (in expectation) for the IWAE."""
    png_bits_per_dim: np.ndarray
    """(B,) bits per dimension of the image as a compressed PNG: its complexity."""
    k: int | None = None
    seed: int | None = None
    labels: np.ndarray | None = None
    """The classes a conditional model scored under; None: the uniform mixture over classes."""


async def score(model: LoadedModel, spec: ScoreSpec, seed: int, limits: Limits) -> Scores:
    """Bits/dim of each image. ``k`` and ``seed`` apply to the VAE families only: the same
    image, k and seed always give the same score, whichever images it comes with. A
    conditional model scores under each image's ``label``, or without one under the uniform
    mixture of its classes, log p(x) = log mean_y p(x | y)."""
    card, family = ready(model, Operation.SCORE)
    k, label = spec.k, spec.label
    if family.autoregressive and k is not None:
        raise InvalidInput(f"k: applies to the VAE families only; {card.name!r} is exact")
    x = quantize(await anyio.to_thread.run_sync(parse_batch, card, spec.images, limits))
    dims = int(np.prod(card.image_shape))
    png = await anyio.to_thread.run_sync(png_bits_per_dim, x)
    if family.pixel_graph is not None:
        log_p = await model.graphs[family.pixel_graph].infer(
            {"image": x}, lambda outputs: mixture_log_prob(x, outputs["params"])
        )
        return Scores("exact", log_p, bits_per_dim(log_p, dims), png)
    k = min(DEFAULT_K, limits.max_iwae_k) if k is None else k
    if k > limits.max_iwae_k:
        raise LimitExceeded(f"k: must be <= {limits.max_iwae_k} (SERVICE_MAX_IWAE_K), got {k}")
    given = labels.resolve(card, label, len(x))
    mixed = given is None and labels.is_conditional(card)
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
    return Scores("iwae", log_p, bits_per_dim(log_p, dims), png, k, seed, given)


def png_bits_per_dim(x: np.ndarray) -> np.ndarray:
    """(B, 1, H, W) on the 8-bit grid -> (B,) bits per dimension of each as a compressed PNG."""
    sizes = [compressed_png_size(pixels) for pixels in to_uint8(x[:, 0])]
    return np.array(sizes, dtype=np.float64) * 8.0 / x[0].size


async def iwae(
    model: LoadedModel, x: np.ndarray, k: int, seed: int, classes: np.ndarray | None = None
) -> np.ndarray:
    """The importance-weighted lower bound on log p(x) in nats, (B,), as
    ``training/models/vae.py`` computes it: z_i = mean + eps_i * std with prior N(0, I),
    posterior N(mean, exp(log_var)), and the decoder's discretized logistic.

    Every image uses the same k noise vectors eps_i, drawn from the seed: so an image's score
    does not depend on the others of the batch, and the first k of a larger k are the same.
    """
    feeds = {"image": x} if classes is None else {"image": x, "label": classes}
    posterior = await model.graphs["encoder"].infer(feeds)
    mean = posterior["mean"].astype(np.float32)  # (B, D)
    log_var = posterior["log_var"].astype(np.float32)
    eps = np.random.default_rng(seed).standard_normal((k, mean.shape[1]), dtype=np.float32)
    z = mean[:, None] + eps[None] * np.exp(0.5 * log_var)[:, None]  # (B, k, D)
    log_pz = -0.5 * (z.astype(np.float64) ** 2 + _LOG_2PI).sum(axis=2)
    log_qz = -0.5 * ((eps.astype(np.float64) ** 2)[None] + log_var[:, None] + _LOG_2PI).sum(axis=2)
    log_px_z = await _decoder_log_prob(model, x, z.reshape(-1, z.shape[2]), k, classes)
    log_w = log_px_z.reshape(len(x), k) + log_pz - log_qz  # (B, k)
    result: np.ndarray = np.logaddexp.reduce(log_w, axis=1) - math.log(k)
    return result


async def _decoder_log_prob(
    model: LoadedModel, x: np.ndarray, z: np.ndarray, k: int, classes: np.ndarray | None
) -> np.ndarray:
    """log p(x_r | z_r) for every row r of z (B k, D), image-major: row r belongs to image r // k.
    Decoded DECODER_ROWS rows at a time; each run's likelihoods are computed in its worker."""
    decoder = model.graphs["decoder"]
    parts = []
    for start in range(0, len(z), DECODER_ROWS):
        owner = np.arange(start, min(start + DECODER_ROWS, len(z))) // k
        feeds = {"z": np.ascontiguousarray(z[start : start + DECODER_ROWS])}
        if classes is not None:
            feeds["label"] = classes[owner]

        def likelihood(outputs: dict[str, np.ndarray], owner: np.ndarray = owner) -> np.ndarray:
            return logistic_log_prob(x[owner], outputs["image"], outputs["log_scale"])

        parts.append(await decoder.infer(feeds, likelihood))
    return np.concatenate(parts)

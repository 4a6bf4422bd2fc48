"""Bits per dimension for each image: exact for the autoregressive families, the importance
weighted bound (IWAE, Burda et al. 2016) for the VAE families (each family's ``score``, in
``families``, uses what is here). The likelihoods are those of
docs/model-store.md ("Pixel likelihoods"), on the image quantised to 8 bits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from service.generation.imaging import channels_last, compressed_png_size, to_uint8
from service.generation.likelihood import (
    logistic_log_prob,
)
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


def png_bits_per_dim(x: np.ndarray) -> np.ndarray:
    """(B, C, H, W) on the 8-bit grid -> (B,) bits per dimension of each as a compressed PNG."""
    sizes = [compressed_png_size(pixels) for pixels in channels_last(to_uint8(x))]
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

"""The discretized logistic pixel likelihoods of docs/model-store.md ("Pixel likelihoods"):
log-probabilities, as ``training/nn.py`` defines them, and sampling. numpy only."""

from __future__ import annotations

import math

import numpy as np

_EPS = 1e-5
BIN = 1.0 / 255.0
MIN_LOG_SCALE = -7.0


def quantize(x: np.ndarray) -> np.ndarray:
    """Round to the nearest of the 256 pixel values k/255: the values the likelihoods cover."""
    return (np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(x))


def _log_bin_mass(x: np.ndarray, mu: np.ndarray, log_s: np.ndarray) -> np.ndarray:
    """log P(x) for pixel values x under logistic(mu, exp(log_s)), on bins of width 1/255, the
    outermost stretched to -inf and +inf; the density times the bin width where the mass
    underflows. Broadcasts; float64."""
    inv_s = np.exp(-log_s)
    centred = x - mu
    plus = inv_s * (centred + BIN / 2)
    minus = inv_s * (centred - BIN / 2)
    log_cdf_plus = _log_sigmoid(plus)  # x = 0
    log_one_minus_cdf_minus = -_softplus(minus)  # x = 1
    cdf_delta = _sigmoid(plus) - _sigmoid(minus)
    mid = inv_s * centred
    log_pdf_mid = mid - log_s - 2.0 * _softplus(mid) + math.log(BIN)
    inner = np.where(cdf_delta > 1e-5, np.log(np.maximum(cdf_delta, 1e-12)), log_pdf_mid)
    return np.where(
        x < BIN / 2, log_cdf_plus, np.where(x > 1 - BIN / 2, log_one_minus_cdf_minus, inner)
    )


def logistic_log_prob(x: np.ndarray, mu: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    """Per-image log-likelihood in nats of a one-component discretized logistic (the VAE's
    decoder). x, mu, log_scale: (B, C, H, W), x on the k/255 grid -> (B,)"""
    log_s = np.maximum(log_scale.astype(np.float64), MIN_LOG_SCALE)
    log_p = _log_bin_mass(x.astype(np.float64), mu.astype(np.float64), log_s)
    return log_p.reshape(len(x), -1).sum(axis=1)


def mixture_log_prob(x: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Per-image log-likelihood in nats of a discretized logistic mixture.

    x: (B, 1, H, W) on the k/255 grid; params: (B, 3K, H, W) = K logits, K means, K log-scales
    -> (B,)
    """
    logits, mu, log_s = np.split(params.astype(np.float64), 3, axis=1)  # each (B, K, H, W)
    log_s = np.maximum(log_s, MIN_LOG_SCALE)
    log_weights = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    log_p = _log_bin_mass(x.astype(np.float64), mu, log_s) + log_weights
    return np.logaddexp.reduce(log_p, axis=1).reshape(len(x), -1).sum(axis=1)


def bits_per_dim(log_prob: np.ndarray, dims: int) -> np.ndarray:
    """Log-likelihoods in nats, one per image of ``dims`` values, to bits per dimension."""
    return -log_prob / (dims * math.log(2.0))


def sample_pixel(
    params: np.ndarray, uniforms: np.ndarray, temperature: float, components: int
) -> np.ndarray:
    """Sample one pixel per row.

    params: (B, 3K) = K mixture logits, K means, K log-scales, with K = ``components``.
    uniforms: (B, 2) in [0, 1): column 0 picks the component, column 1 drives the logistic.
    Returns (B,) values on the 8-bit grid k/255.
    """
    k = components
    logits, mu, log_s = params[:, :k], params[:, k : 2 * k], params[:, 2 * k : 3 * k]
    logits = logits.astype(np.float64)
    z = (logits - logits.max(axis=1, keepdims=True)) / temperature  # finite for any T > 0
    weights = np.exp(z)
    cdf = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    component = np.minimum((uniforms[:, :1] > cdf).sum(axis=1), k - 1)  # (B,)
    rows = np.arange(params.shape[0])
    u = np.clip(uniforms[:, 1], _EPS, 1.0 - _EPS)
    scale = np.exp(log_s[rows, component].astype(np.float64))
    x = mu[rows, component] + scale * temperature * (np.log(u) - np.log1p(-u))
    return (np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)

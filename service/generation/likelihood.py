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


def params_per_component(channels: int) -> int:
    """Params channels per mixture component: 3 for grayscale (a logit, a mean, a log-scale),
    10 for colour (a logit shared by R, G and B; 3 means; 3 log-scales; 3 coefficients)."""
    return 1 + 2 * channels + channels * (channels - 1) // 2


def _split(params: np.ndarray, channels: int) -> tuple[np.ndarray, ...]:
    """(B, P K, ...) -> logits (B, K, ...), means, log-scales, coefficients (B, C or 3, K, ...)."""
    k = params.shape[1] // params_per_component(channels)
    shape = (params.shape[0], -1, k, *params.shape[2:])
    logits = params[:, :k]
    mu = params[:, k : (1 + channels) * k].reshape(shape)
    log_s = params[:, (1 + channels) * k : (1 + 2 * channels) * k].reshape(shape)
    coeffs = params[:, (1 + 2 * channels) * k :].reshape(shape)
    return logits, mu, log_s, coeffs


def mixture_log_prob(x: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Per-image log-likelihood in nats of a discretized logistic mixture.

    x: (B, 1, H, W) on the k/255 grid; params: (B, 3K, H, W) = K logits, K means, K log-scales
    -> (B,). Colour, x (B, 3, H, W): params (B, 10K, H, W) = K logits, 3K means, 3K log-scales
    and 3K coefficients; G's mean moves by its coefficient times R, B's by two times R and G.
    """
    channels = x.shape[1]
    logits, mu, log_s, coeffs = _split(params.astype(np.float64), channels)
    log_s = np.maximum(log_s, MIN_LOG_SCALE)
    log_weights = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    x64 = x.astype(np.float64)[:, :, None]  # (B, C, 1, H, W)
    if channels == 3:
        r, g = x64[:, 0], x64[:, 1]
        mu = np.stack(
            [mu[:, 0], mu[:, 1] + coeffs[:, 0] * r, mu[:, 2] + coeffs[:, 1] * r + coeffs[:, 2] * g],
            axis=1,
        )
    log_p = _log_bin_mass(x64, mu, log_s).sum(axis=1) + log_weights
    return np.logaddexp.reduce(log_p, axis=1).reshape(len(x), -1).sum(axis=1)


def bits_per_dim(log_prob: np.ndarray, dims: int) -> np.ndarray:
    """Log-likelihoods in nats, one per image of ``dims`` values, to bits per dimension."""
    return -log_prob / (dims * math.log(2.0))


def sample_pixel(
    params: np.ndarray, uniforms: np.ndarray, temperature: float, components: int, channels: int = 1
) -> np.ndarray:
    """Sample one pixel per row: a component, then each channel in order, R, then G given R,
    then B given R and G (their means move by the coefficients times the values drawn).

    params: (B, P K) as ``mixture_log_prob``'s, with K = ``components``.
    uniforms: (B, 1 + C) in [0, 1): column 0 picks the component, column 1 + c drives channel
    c's logistic. Returns (B, C) values on the 8-bit grid k/255.
    """
    k = components
    logits, mu, log_s, coeffs = _split(params[:, : params_per_component(channels) * k], channels)
    logits = logits.astype(np.float64)
    z = (logits - logits.max(axis=1, keepdims=True)) / temperature  # finite for any T > 0
    weights = np.exp(z)
    cdf = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    component = np.minimum((uniforms[:, :1] > cdf).sum(axis=1), k - 1)  # (B,)
    rows = np.arange(params.shape[0])
    drawn: list[np.ndarray] = []
    for c in range(channels):
        u = np.clip(uniforms[:, 1 + c], _EPS, 1.0 - _EPS)
        scale = np.exp(log_s[rows, c, component].astype(np.float64))
        mean = mu[rows, c, component]
        if c == 1:
            mean = mean + coeffs[rows, 0, component].astype(np.float64) * drawn[0]
        elif c == 2:
            mean = mean + coeffs[rows, 1, component].astype(np.float64) * drawn[0]
            mean = mean + coeffs[rows, 2, component].astype(np.float64) * drawn[1]
        x = mean + scale * temperature * (np.log(u) - np.log1p(-u))
        drawn.append((np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32))
    return np.stack(drawn, axis=1)

"""Sampling from the discretized logistic mixture of docs/model-store.md ("Pixel likelihoods")."""

from __future__ import annotations

import numpy as np

_EPS = 1e-5


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

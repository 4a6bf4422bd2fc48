"""Metric functions, in numpy so that they can be checked on cases with known answers."""

from __future__ import annotations

import math

import numpy as np


def bits_per_dim(nll_nats: np.ndarray | float, dims: int) -> float:
    """Mean negative log-likelihood in nats per image -> bits per dimension."""
    return float(np.mean(nll_nats)) / (dims * math.log(2.0))


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, F) and (M, F).

    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)); the trace of the square root is taken as
    that of (S_a^(1/2) S_b S_a^(1/2))^(1/2), which is symmetric, so eigh is stable.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(s_a)
    covmean_trace = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * covmean_trace)


def kid(
    a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018) between feature sets (N, F) and (M, F):
    the unbiased estimate of the squared MMD under the kernel k(u, v) = (u·v / F + 1)^3, averaged
    over ``subsets`` random subsets of min(subset_size, N, M) rows of each. Returns the mean and
    the standard deviation over the subsets. Unbiased, so about 0 (and possibly below) when both
    sets come from the same distribution, whatever their size."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 rows in each set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    dims = a.shape[1]
    estimates = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = (x @ x.T / dims + 1) ** 3
        k_yy = (y @ y.T / dims + 1) ** 3
        k_xy = (x @ y.T / dims + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        estimates.append(within - 2 * k_xy.mean())
    return float(np.mean(estimates)), float(np.std(estimates))


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, M), through |a|² + |b|² - 2 a·b, clipped at 0."""
    squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(squared, 0, None))


def _knn_radii(features: np.ndarray, k: int, block: int) -> np.ndarray:
    """Each row's distance to its k-th nearest other row (itself excluded): (N,)."""
    radii = np.empty(len(features))
    for start in range(0, len(features), block):
        d = _pairwise_distances(features[start : start + block], features)
        radii[start : start + block] = np.partition(d, k, axis=1)[:, k]  # [:, 0] is itself
    return radii


def _covered(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, block: int) -> np.ndarray:
    """(N,) bool: each point lies within the radius of at least one centre."""
    inside = np.empty(len(points), dtype=bool)
    for start in range(0, len(points), block):
        d = _pairwise_distances(points[start : start + block], centres)
        inside[start : start + block] = (d <= radii[None, :]).any(axis=1)
    return inside


def precision_recall(
    real: np.ndarray, generated: np.ndarray, k: int = 3, block: int = 1000
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``generated`` against
    ``real`` features. Each set's manifold is the union of balls around its points, each ball
    reaching that point's k-th nearest neighbour in the same set. Precision is the fraction of
    generated points inside the real manifold (fidelity), recall the fraction of real points
    inside the generated one (diversity)."""
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    if min(len(real), len(generated)) <= k:
        raise ValueError(f"precision and recall need more than k = {k} rows in each set")
    precision = _covered(generated, real, _knn_radii(real, k, block), block).mean()
    recall = _covered(real, generated, _knn_radii(generated, k, block), block).mean()
    return float(precision), float(recall)


def sample_metrics(samples: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """FD, KID (with its standard deviation over subsets), precision and recall of sample
    features against reference features."""
    kid_mean, kid_std = kid(samples, reference)
    precision, recall = precision_recall(reference, samples)
    return {
        "fd": frechet_distance(samples, reference),
        "kid": kid_mean,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
    }


def class_entropy(predicted: np.ndarray, num_classes: int = 10) -> float:
    """Entropy in nats of the histogram of predicted classes; ln(num_classes) when uniform."""
    counts = np.bincount(np.asarray(predicted), minlength=num_classes).astype(np.float64)
    p = counts / counts.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())

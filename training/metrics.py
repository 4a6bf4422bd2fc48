"""Metric functions, in numpy so that they can be checked on cases with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from service.store import GRAPH_FILE


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


def class_entropy(predicted: np.ndarray, num_classes: int = 10) -> float:
    """Entropy in nats of the histogram of predicted classes; ln(num_classes) when uniform."""
    counts = np.bincount(np.asarray(predicted), minlength=num_classes).astype(np.float64)
    p = counts / counts.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


class FeatureExtractor:
    """The project classifier, run from its exported ONNX graph: images -> (logits, features)."""

    def __init__(self, folder: Path) -> None:
        import onnxruntime as ort

        path = _latest_graph(folder, GRAPH_FILE)
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.path = path

    def __call__(self, images: np.ndarray, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """images (N, 1, 28, 28) float32 in [0, 1] -> logits (N, 10), features (N, F)."""
        logits, feats = [], []
        for i in range(0, len(images), batch):
            lo, fe = self.session.run(None, {"image": np.ascontiguousarray(images[i : i + batch])})
            logits.append(lo)
            feats.append(fe)
        return np.concatenate(logits), np.concatenate(feats)


def _latest_graph(folder: Path, filename: str) -> Path:
    """``folder`` is a graph's Triton model folder (``<name>.<role>/``) or a graph file."""
    if folder.is_file():
        return folder
    versions = sorted((p for p in folder.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
    if not versions or not (versions[-1] / filename).is_file():
        raise FileNotFoundError(
            f"no <version>/{filename} under {folder}; export the classifier first: "
            "python -m training export runs/classifier-fashion-mnist/checkpoint.pt "
            "--name classifier-fashion"
        )
    return versions[-1] / filename

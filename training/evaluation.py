"""The data and measurements a family's ``evaluate`` draws on: the split measured against, the
classifier's features and the sample-quality figures. It knows no family, nor how a classifier
is opened (``extractors.py``, which rebuilds the families' classifier), so that the families
can take it without an import circle."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from .data import Dataset, load, name_of
from .metrics import (
    bits_per_dim,
    class_entropy,
    frechet_distance,
    sample_metrics,
)

EVAL_SEED = 1234
SPLIT_AND_REFERENCE = {
    "test": ("test", "heldout"),
    "heldout": ("heldout", "train"),
}
"""The split measured against, and the split whose real images give the reference values."""

PerImage = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Draw = Callable[[int, torch.Generator], torch.Tensor]


class Extractor(Protocol):
    """What the figures need of a feature extractor (``extractors.py`` opens them)."""

    path: Any

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """images (N, C, H, W) float32 in [0, 1] -> (logits (N, K) or None, features (N, F))."""
        ...

    def describe(self) -> dict[str, Any]: ...


class Sampler(Protocol):
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, C, H, W) in [0, 1]."""
        ...


class Evaluation:
    """The data and the measurements a family's ``evaluate`` draws on."""

    def __init__(
        self,
        dataset: Dataset,
        extractor: Callable[[], Extractor],
        fd_samples: int = 10_000,
        iwae_k: int = 100,
        limit: int | None = None,
        batch: int = 500,
        split: str = "test",
        temperatures: tuple[float, ...] = (),
        seed: int = EVAL_SEED,
    ) -> None:
        if split not in SPLIT_AND_REFERENCE:
            raise ValueError(
                f"unknown split {split!r}; choose one of {', '.join(SPLIT_AND_REFERENCE)}"
            )
        self.dataset, self.open_extractor, self.seed = dataset, extractor, seed
        self.name = name_of(dataset)
        self.fd_samples, self.iwae_k, self.batch = fd_samples, iwae_k, batch
        self.split, self.reference_split = SPLIT_AND_REFERENCE[split]
        self.temperatures = temperatures
        """Sampling temperatures below 1 whose FD a family that has one also measures."""
        images = load(dataset, self.split)
        self.x = images.float_images()[:limit] if limit else images.float_images()
        self.y = images.labels[: len(self.x)]
        self.how: dict[str, Any] = {
            "split": f"{self.name}/{self.split}", f"{self.split}_images": len(self.x),
            "seed": self.seed,
        }  # fmt: skip

    @property
    def dims(self) -> int:
        return self.x[0].numel()

    def per_image(self, fn: PerImage, desc: str) -> np.ndarray:
        """fn(images, labels) on batches of the split -> one value per image."""
        steps = tqdm(range(0, len(self.x), self.batch), desc=desc, leave=False)
        out = [fn(self.x[i : i + self.batch], self.y[i : i + self.batch]) for i in steps]
        return torch.cat(out).double().numpy()

    def bits_per_dim(self, nll_nats: np.ndarray) -> float:
        return bits_per_dim(nll_nats, self.dims)

    @cached_property
    def extract(self) -> Extractor:
        """The classifier (or the label-free fallback) whose features the figures compare,
        opened the first time a figure needs them (``extractors.open_extractor``)."""
        extractor = self.open_extractor()
        self.how["feature_extractor"] = extractor.describe()
        return extractor

    @cached_property
    def reference_features(self) -> np.ndarray:
        """The classifier's features of the reference split's real images (10,000 at most)."""
        if self.reference_split == "heldout":
            return self.heldout_features
        images = load(self.dataset, self.reference_split).float_images()[:10_000]
        return self.extract(images.numpy())[1]

    @cached_property
    def heldout_features(self) -> np.ndarray:
        """The classifier's features of the held-out images: what model selection compares
        against, whichever split is measured."""
        return self.extract(load(self.dataset, "heldout").float_images().numpy())[1]

    @cached_property
    def split_features(self) -> np.ndarray:
        """The classifier's features of the whole measured split (FD's reference set)."""
        if self.split == "heldout":
            return self.heldout_features
        return self.extract(load(self.dataset, self.split).float_images().numpy())[1]

    def features(self, images: torch.Tensor | np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(logits, features) of images in [0, 1]; no logits from an extractor that is not a
        classifier."""
        array = images.numpy() if isinstance(images, torch.Tensor) else images
        return self.extract(np.ascontiguousarray(array, dtype=np.float32))

    def draw(self, sample: Draw, desc: str = "") -> torch.Tensor:
        """``fd_samples`` images of ``sample(n, generator)``, from the evaluation's seed."""
        n = self.fd_samples
        g = torch.Generator().manual_seed(self.seed)
        chunks = []
        for i in tqdm(range(0, n, 250), desc=desc or f"{n} samples", leave=False):
            chunks.append(sample(min(250, n - i), g))
        return torch.cat(chunks)

    def fd_and_class_entropy(self, sample: Draw, desc: str = "") -> tuple[float, float | None]:
        """FD to the measured split and the entropy of the predicted classes of ``draw``'s
        images: the two figures that show a sampling setting's price (temperature)."""
        logits, features = self.features(self.draw(sample, desc))
        fd = frechet_distance(features, self.split_features)
        return fd, predicted_class_entropy(logits)

    def sample_quality(self, model: Sampler) -> dict[str, float | None]:
        """FD, KID, precision and recall of ``fd_samples`` samples against the measured split,
        each beside its real-data reference (as many real images of the reference split), and
        the entropy of the samples' predicted classes."""
        n = self.fd_samples
        started = time.perf_counter()
        images = self.draw(model.sample)
        seconds = time.perf_counter() - started
        logits, f_samples = self.features(images)
        measured = self.quality_against_split(f_samples)
        self.how.update(
            fd_samples=n, sample_seconds_per_image_torch_cpu=seconds / n,
            kid={"subsets": 100, "subset_size": min(1000, n), "kernel": "(u.v / F + 1)^3"},
            precision_recall={"k": 3, "reference": "the measured split's first images, as many "
                              "as there are samples"},
        )  # fmt: skip
        return {
            **measured,
            "class_entropy": predicted_class_entropy(logits),
            "class_entropy_max": None if logits is None else math.log(len(logits[0])),
        }

    def quality_against_split(self, f_samples: np.ndarray) -> dict[str, float]:
        """``sample_metrics`` of these features against the measured split, and the same
        metrics of as many real images of the reference split: the real-data floor."""
        n = len(f_samples)
        f_split = self.split_features
        f_floor = self.reference_features[:n]
        generated = _against(f_samples, f_split, n)
        floor = _against(f_floor, f_split, n)
        self.how.update(
            fd_reference=f"{self.name}/{self.split} ({len(f_split)} images)",
            fd_floor=f"{len(f_floor)} real {self.reference_split} images vs the same "
            f"{self.name}/{self.split} images",
            classifier=str(self.extract.path),
        )  # fmt: skip
        return {
            "fd": generated["fd"],
            "fd_real_floor": floor["fd"],
            "kid": generated["kid"],
            "kid_std": generated["kid_std"],
            "kid_real_floor": floor["kid"],
            "precision": generated["precision"],
            "precision_real": floor["precision"],
            "recall": generated["recall"],
            "recall_real": floor["recall"],
        }


def predicted_class_entropy(logits: np.ndarray | None) -> float | None:
    """The entropy of the predicted classes; None without a classifier's logits."""
    return None if logits is None else class_entropy(logits.argmax(1), len(logits[0]))


def _against(features: np.ndarray, f_split: np.ndarray, n: int) -> dict[str, float]:
    """FD against the whole split; KID, precision and recall against its first n images (the
    k-NN manifolds compare sets of equal size)."""
    metrics = sample_metrics(features, f_split[:n])
    metrics["fd"] = frechet_distance(features, f_split)
    return metrics

"""What a run watches between epochs: the Fréchet distance and KID of a fixed set of samples to
the held-out images (never the test split), the best checkpoint by that distance, and when to
stop because it has not improved for a while."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from .data import Dataset
from .evaluation import Evaluation, Sampler
from .extractors import open_extractor
from .metrics import frechet_distance, kid

TRACK_SEED = 4321
"""The seed of the samples drawn at every evaluation: the same latents (or pixel draws) each time,
so that two epochs' figures differ by the model only."""


class HeldoutTracker:
    """FD and KID of ``samples`` samples against the held-out split's classifier features."""

    def __init__(self, dataset: Dataset, classifier: Path | str | None, samples: int) -> None:
        extractor = partial(open_extractor, dataset, classifier)
        self.ev = Evaluation(
            dataset, extractor, fd_samples=samples, split="heldout", seed=TRACK_SEED
        )
        self.reference = self.ev.heldout_features  # (N, F), once for the whole run

    @torch.no_grad()
    def measure(self, model: Sampler) -> dict[str, float]:
        features = self.ev.features(self.ev.draw(model.sample))[1]
        kid_mean, _ = kid(
            features, self.reference, subsets=20, subset_size=min(1000, len(features))
        )
        return {
            "heldout_fd": frechet_distance(features, self.reference),
            "heldout_kid": kid_mean,
        }


@dataclass
class Selection:
    """The best evaluation so far, by one figure (lower is better), and how many evaluations
    have passed without beating it."""

    metric: str
    best: float = math.inf
    best_epoch: int = 0
    since_best: int = 0

    def update(self, epoch: int, value: float) -> bool:
        """Record an evaluation; True when it is the new best."""
        if value < self.best:
            self.best, self.best_epoch, self.since_best = value, epoch, 0
            return True
        self.since_best += 1
        return False

    def exhausted(self, patience: int) -> bool:
        """No improvement in the last ``patience`` evaluations (never, when patience is 0)."""
        return patience > 0 and self.since_best >= patience

"""Evaluation: on the test split for the model card, or on the held-out split for choosing
between recipes (never the test split). Each family says what it measures
(``GenerativeModel.evaluate``); the shared measurements are in ``evaluation.py``."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch

from .checkpoints import dataset_of, load_checkpoint
from .data import Dataset
from .evaluation import EVAL_SEED, Evaluation
from .extractors import open_extractor
from .models import GenerativeModel


def evaluate_checkpoint(
    checkpoint: Path, classifier: Path | None, **options: Any
) -> dict[str, Any]:
    """``evaluate`` of a checkpoint, on the dataset it was trained on."""
    model, ckpt = load_checkpoint(checkpoint)
    return evaluate(model, dataset_of(ckpt), classifier, **options)


@torch.no_grad()
def evaluate(
    model: GenerativeModel, dataset: Dataset, classifier: Path | None, **options: Any
) -> dict[str, Any]:
    """{"metrics": {...}, "evaluation": {...how each was measured...}}; ``options`` are
    ``Evaluation``'s."""
    torch.manual_seed(EVAL_SEED)
    ev = Evaluation(dataset, partial(open_extractor, dataset, classifier), **options)
    metrics = model.evaluate(ev)
    return {"metrics": metrics, "evaluation": ev.how}

"""Models built new, or rebuilt from a checkpoint, and the names of a run folder's files: what
the trainer, the evaluator, the exporter and the classifier's feature extractor share, so that
none of them imports the trainer.

A run folder holds ``checkpoint.pt`` (the last epoch), ``best.pt`` (the epoch with the best
held-out figure) and ``metrics.jsonl`` (one line per epoch); ``trainer.py`` writes them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from .data import Dataset, spec
from .imageset import DataSpec
from .models import MODEL_CLASSES, GenerativeModel
from .models.base import SCHEDULES
from .own import OwnData

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"


def build_model(
    family: str, config: dict[str, Any], dataset: Dataset | DataSpec = "fashion-mnist"
) -> GenerativeModel:
    """A new model of ``family`` for ``dataset`` (which sizes it), its defaults overridden by
    ``config``. Refused, naming the family and the shape, when the family cannot model the
    dataset's images."""
    if family not in MODEL_CLASSES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(MODEL_CLASSES)}")
    model_cls, config_cls = MODEL_CLASSES[family]
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(config) - known
    if unknown:
        raise ValueError(
            f"{family} has no setting {', '.join(sorted(unknown))}; "
            f"it has {', '.join(sorted(known))}"
        )
    cfg = config_cls(**config)
    if cfg.lr_schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(SCHEDULES)}")
    if cfg.lr_schedule != "constant" and getattr(cfg, "lr_decay", 1.0) != 1.0:
        raise ValueError(f"{family} decays its rate every step (lr_decay); set lr_decay=1.0 to "
                         "use lr_schedule")  # fmt: skip
    data = dataset if isinstance(dataset, DataSpec) else spec(dataset)
    problem = model_cls.unsupported(data)
    if problem:
        raise ValueError(problem)
    return model_cls(cfg, data)


def dataset_of(ckpt: dict[str, Any]) -> Dataset:
    """The data a checkpoint was trained on: a shipped dataset's name, or one's own images."""
    return OwnData.from_record(ckpt["data"]) if ckpt.get("data") else ckpt["dataset"]


def spec_of(ckpt: dict[str, Any]) -> Dataset | DataSpec:
    """What sizes a checkpoint's model, without reading one's own images again."""
    record = ckpt.get("data")
    if not record:
        return ckpt["dataset"]
    return DataSpec(tuple(record["image_shape"]), tuple(record["class_names"]))


def checkpoint_in(path: Path) -> Path:
    """The checkpoint a path names: a file as it is; a run folder's best epoch, or its last when
    it kept no best."""
    if path.is_dir():
        best = path / BEST
        return best if best.is_file() else path / CHECKPOINT
    return path


def load_checkpoint(path: Path) -> tuple[GenerativeModel, dict[str, Any]]:
    """A model rebuilt from the config its checkpoint carries, with its trained weights."""
    ckpt = torch.load(checkpoint_in(path), map_location="cpu", weights_only=False)
    model = build_model(ckpt["family"], ckpt["config"], spec_of(ckpt))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt

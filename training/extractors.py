"""The feature extractor whose features the Fréchet distance, KID, precision and recall compare.

- The shipped datasets (1×28×28): the project's Fashion-MNIST classifier, an exported ONNX graph
  (``model_store/classifier-fashion.classifier``), exactly as before.
- One's own images with classes: the project's classifier trained on those images
  (``python -m training train classifier --data PATH``), found in ``runs/classifier-<data>`` or
  named with ``--classifier RUN_OR_FILE`` (a run folder, a checkpoint, an exported graph folder
  or an ``.onnx`` file). Its image shape and classes must be the data's.
- One's own images without classes (or when asked for with ``--classifier random-features``):
  ``RandomFeatures``, a fixed convolutional network whose weights are drawn from a fixed seed
  and never trained ("random-features FD"). It needs no labels and no download, and is the same
  on every machine with the same torch; its figures compare models of the same data, not
  datasets, and mean less than a trained classifier's (docs/training.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelstore.checksums import sha256_of
from modelstore.layout import GRAPH_FILE

from .checkpoints import checkpoint_in, load_checkpoint
from .data import Dataset, name_of, spec
from .evaluation import Extractor
from .imageset import DataSpec
from .own import OwnData

FASHION_CLASSIFIER = Path("model_store/classifier-fashion.classifier")
RANDOM_FEATURES = "random-features"
"""What ``--classifier`` takes to ask for the fallback by name."""
RANDOM_SEED = 20261206
RANDOM_WIDTHS = (32, 64, 128)


def _digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RandomFeatures:
    """A seeded, randomly initialised, untrained conv net: three 3×3 convolutions (stride 2 after
    the first) with ReLUs, then the mean and the standard deviation of each of the last layer's
    channels over the image (2 × 128 features). Takes any channels and size."""

    name = RANDOM_FEATURES

    def __init__(self, image_shape: Sequence[int], seed: int = RANDOM_SEED) -> None:
        self.image_shape = tuple(image_shape)
        self.seed = seed
        g = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        c_in = self.image_shape[0]
        for i, c_out in enumerate(RANDOM_WIDTHS):
            conv = nn.Conv2d(c_in, c_out, 3, stride=1 if i == 0 else 2, padding=1)
            with torch.no_grad():  # He-normal weights, zero biases: drawn from our generator
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) *
                                  (2.0 / (c_in * 9)) ** 0.5)  # fmt: skip
                assert conv.bias is not None
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
            c_in = c_out
        self.net = nn.Sequential(*layers).eval()
        self.path = f"{RANDOM_FEATURES} (seed {seed})"
        self.sha256 = _digest(self.net)

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch: int = 500) -> tuple[None, np.ndarray]:
        _check_shape(self.image_shape, images.shape[1:], self.path)
        out = []
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch], dtype=np.float32))
            h = self.net(x * 2 - 1).flatten(2)
            out.append(torch.cat([h.mean(2), h.std(2)], 1).double().numpy())
        return None, np.concatenate(out)

    def describe(self) -> dict[str, Any]:
        return {
            "name": RANDOM_FEATURES,
            "kind": "a fixed, randomly initialised conv net (untrained): no labels needed",
            "seed": self.seed,
            "weights_sha256": self.sha256,
            "input_shape": list(self.image_shape),
            "features": 2 * RANDOM_WIDTHS[-1],
        }


class TorchClassifier:
    """The project's classifier from a training checkpoint (a run folder or a ``.pt``)."""

    def __init__(self, path: Path) -> None:
        self.path = checkpoint_in(path)
        model, ckpt = load_checkpoint(path)
        if ckpt["family"] != "classifier":
            raise ValueError(f"{path}: a {ckpt['family']} checkpoint, not a classifier's")
        net = model.net
        assert isinstance(net, nn.Module)
        self.net = net.eval()
        self.data: DataSpec = model.data
        self.epoch = ckpt["epoch"]
        self.trained_on = ckpt["dataset"]

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
        _check_shape(self.data.image_shape, images.shape[1:], self.path)
        logits, feats = [], []
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch], dtype=np.float32))
            lo, fe = self.net(x)
            logits.append(lo.numpy())
            feats.append(fe.numpy())
        return np.concatenate(logits), np.concatenate(feats)

    def describe(self) -> dict[str, Any]:
        return {
            "name": "classifier",
            "kind": f"the project's classifier trained on {self.trained_on} (epoch {self.epoch})",
            "file": str(self.path),
            "sha256": sha256_of(self.path),
            "input_shape": list(self.data.image_shape),
            "class_names": list(self.data.class_names),
        }


def _check_shape(takes: Sequence[Any], got: Sequence[int], path: Any) -> None:
    if any(isinstance(t, int) and t != g for t, g in zip(takes, got, strict=True)):
        a, b = ("×".join(map(str, s)) for s in (takes, got))
        raise ValueError(f"the feature extractor {path} takes {a} images, not {b}: its "
                         "Fréchet distance cannot measure these")  # fmt: skip


class OnnxClassifier:
    """The project's classifier, run from its exported ONNX graph: a Triton graph folder
    (``<name>.classifier/``, its newest version) or a ``.onnx`` file."""

    def __init__(self, path: Path, batch: int = 1000) -> None:
        import onnxruntime as ort

        self.path = path if path.is_file() else _newest_graph(path)
        self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        self.batch = batch

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _check_shape(self.session.get_inputs()[0].shape[1:], images.shape[1:], self.path)
        logits, feats = [], []
        for i in range(0, len(images), self.batch):
            x = np.ascontiguousarray(images[i : i + self.batch])
            lo, fe = self.session.run(None, {"image": x})
            logits.append(lo)
            feats.append(fe)
        return np.concatenate(logits), np.concatenate(feats)

    def describe(self) -> dict[str, Any]:
        return {
            "name": "classifier",
            "kind": "the project's classifier, exported ONNX graph",
            "file": str(self.path),
            "sha256": sha256_of(self.path),
            "input_shape": list(self.session.get_inputs()[0].shape[1:]),
        }


def _newest_graph(folder: Path) -> Path:
    versions = sorted((p for p in folder.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
    if not versions or not (versions[-1] / GRAPH_FILE).is_file():
        raise FileNotFoundError(
            f"no <version>/{GRAPH_FILE} under {folder}; export the classifier first: "
            "python -m training export runs/classifier-fashion-mnist/checkpoint.pt "
            "--name classifier-fashion"
        )
    return versions[-1] / GRAPH_FILE


def default_classifier(dataset: Dataset) -> Path:
    """Where the classifier of ``dataset`` is looked for when ``--classifier`` is not given."""
    if isinstance(dataset, OwnData):
        return Path("runs") / f"classifier-{name_of(dataset)}"
    return FASHION_CLASSIFIER


def train_classifier_hint(dataset: Dataset) -> str:
    if not isinstance(dataset, OwnData):
        return "python -m training train classifier"
    parts = ["python -m training train classifier --data", str(dataset.path)]
    if dataset.size:
        parts += ["--size", str(dataset.size)]
    if dataset.channels:
        parts += ["--channels", str(dataset.channels)]
    return " ".join(parts)


def open_extractor(dataset: Dataset, classifier: Path | str | None) -> Extractor:
    """The feature extractor for ``dataset``: ``classifier`` when given (``random-features``
    names the fallback), else the default one (``choose``). Checked against the data."""
    data = spec(dataset)
    if classifier is None:
        classifier = choose(dataset, None)
    if str(classifier) == RANDOM_FEATURES:
        return RandomFeatures(data.image_shape)
    path = Path(classifier)
    if not path.exists():
        raise FileNotFoundError(f"no classifier at {path}")
    extractor: Extractor
    if path.is_dir() and ((path / "best.pt").is_file() or (path / "checkpoint.pt").is_file()):
        extractor = TorchClassifier(path)
    elif path.suffix == ".pt":
        extractor = TorchClassifier(path)
    else:
        extractor = OnnxClassifier(path)
    check_fit(extractor, data, path)
    return extractor


def check_fit(extractor: Extractor, data: DataSpec, path: Path) -> None:
    """The classifier must take the data's images, and (for one trained with classes named)
    know the data's classes."""
    described = extractor.describe()
    takes = described["input_shape"]
    if any(isinstance(t, int) and t > 0 and t != d for t, d in zip(takes, data.image_shape,
                                                                     strict=True)):  # fmt: skip
        a, b = ("×".join(map(str, s)) for s in (takes, data.image_shape))
        raise ValueError(f"the classifier {path} takes {a} images, but the data's are {b}; "
                         "train one on this data (python -m training train classifier --data "
                         "PATH)")  # fmt: skip
    names = described.get("class_names")
    if names is not None and data.num_classes >= 2 and list(names) != list(data.class_names):
        raise ValueError(f"the classifier {path} knows the classes {', '.join(names)}, but "
                         f"the data's are {', '.join(data.class_names)}; train one on this "
                         "data")  # fmt: skip


def choose(dataset: Dataset, classifier: Path | str | None) -> Path | str:
    """Which extractor measures ``dataset`` when ``classifier`` is not named: the shipped
    datasets' classifier; for one's own images with classes, the classifier trained on them
    (``runs/classifier-<data>``), required; without classes, ``random-features``."""
    if classifier is not None:
        return classifier
    if not isinstance(dataset, OwnData):
        return FASHION_CLASSIFIER
    data = spec(dataset)
    if data.num_classes < 2:
        return RANDOM_FEATURES
    found = default_classifier(dataset)
    if found.exists():
        return found
    raise FileNotFoundError(
        f"{name_of(dataset)} has {data.num_classes} classes, so its FD uses a classifier trained "
        f"on it, and there is none at {found}: train it first ({train_classifier_hint(dataset)}), "
        f"or pass --classifier PATH, or --classifier {RANDOM_FEATURES} for the label-free "
        "fallback"
    )

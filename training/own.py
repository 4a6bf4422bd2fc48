"""One's own images: a folder or an ``.npz`` read into the tensors the shipped datasets give.

A folder holds PNG, JPEG and WebP files (other files and hidden ones are skipped). When it has
subfolders, each is a class, named by the subfolder, and holds that class's images (at any depth
below it); then no image may lie beside them. Without subfolders the images have no classes.
An ``.npz`` holds ``images`` ((N, H, W), (N, H, W, C) or (N, C, H, W) with C 1, 3 or 4; uint8,
or floats in [0, 1]) and optionally ``labels`` ((N,) integers 0..K-1) and ``class_names``.

Every image becomes 8-bit grey or RGB: transparency is composited onto black (the background of
the shipped datasets), a 16-bit grey image is scaled to 8 bits, a palette image becomes RGB. With
a size, each image is cropped to its centre square and resized with Lanczos (antialiased)
resampling; without one, all must be the same square size, 28 to 64 pixels. The channels are 1
when every image is grey (R = G = B) and 3 otherwise, unless asked for: 1 turns colour into grey
(ITU-R 601 luma, Pillow's "L"), 3 repeats grey.

The split is the same every time for the same files: within each class, the images (in sorted
path order, or the npz's order) are shuffled with a fixed seed that no training setting changes,
and spread evenly over the class; the last 10% of that order is the test split, the 10% before it
the held-out split, and the rest trains (at least one image held out and one for test).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .imageset import SPLITS, DataError, DataSpec, ImageSet

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MIN_SIZE, MAX_SIZE = 28, 64
SPLIT_SEED = 20261206
"""The split's own seed: the same held-out and test images whatever a run's --seed."""
HELDOUT_FRACTION = TEST_FRACTION = 0.1
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclass(frozen=True)
class OwnData:
    """A folder of images or an ``.npz`` of one's own (``python -m training train --data``), with
    the size and number of channels asked for (None: what the images are)."""

    path: Path
    size: int | None = None
    channels: int | None = None

    @property
    def name(self) -> str:
        """What runs and cards call the dataset: the folder's (or file's) name."""
        return self.path.stem if self.path.suffix == ".npz" else self.path.name

    def record(self) -> dict[str, Any]:
        """What a checkpoint and a model card keep of the data: enough to read it again and to
        say what a model was trained on."""
        return read(self).record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> OwnData:
        return cls(Path(record["path"]), record["size_asked"], record["channels_asked"])


@dataclass(frozen=True)
class OwnImages:
    images: torch.Tensor  # (N, C, H, W) uint8, in the order read
    labels: torch.Tensor  # (N,) int64; all 0 without classes
    spec: DataSpec
    parts: dict[str, torch.Tensor]  # split -> indices into images
    record: dict[str, Any]
    name: str

    def split(self, split: str) -> ImageSet:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        idx = self.parts[split]
        return ImageSet(self.images[idx], self.labels[idx], f"{self.name}/{split}")


@lru_cache(maxsize=4)
def read(source: OwnData) -> OwnImages:
    """Read, convert, check and split ``source``; raises ``DataError`` naming what is wrong."""
    path = source.path
    if source.size is not None and not MIN_SIZE <= source.size <= MAX_SIZE:
        raise DataError(f"--size {source.size}: sizes from {MIN_SIZE} to {MAX_SIZE} are taken")
    if source.channels not in (None, 1, 3):
        raise DataError(f"--channels {source.channels}: 1 or 3")
    if path.is_dir():
        items, class_names = _folder(path), _classes(path)
        pictures: list[tuple[str, Any, int]] = [
            (str(p), lambda p=p: _open(p), label) for p, label in items
        ]
        files, kind = len(pictures), "folder"
    elif path.is_file() and path.suffix == ".npz":
        pictures, class_names = _npz(path)
        files, kind = 1, "npz"
    elif path.exists():
        raise DataError(f"{path}: neither a folder of images nor an .npz file")
    else:
        raise DataError(f"{path}: no such folder or .npz file")
    if len(pictures) < 3:
        raise DataError(f"{path}: {len(pictures)} images; training, held-out and test need 3 "
                        "at the very least")  # fmt: skip
    rgb = _decode_all(path, pictures, source.size)
    grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    channels = source.channels or (1 if grey else 3)
    if channels == 1:
        chw = rgb[..., :1] if grey else _luma(rgb)
    else:
        chw = rgb
    images = torch.from_numpy(np.ascontiguousarray(chw.transpose(0, 3, 1, 2)))
    labels = torch.tensor([label for _, _, label in pictures], dtype=torch.int64)
    parts = _split(labels)
    spec = DataSpec(tuple(images.shape[1:]), class_names)  # type: ignore[arg-type]
    record = {
        "format": kind,
        "path": str(path),
        "files": files,
        "images": len(images),
        "size_asked": source.size,
        "channels_asked": source.channels,
        "image_shape": list(spec.image_shape),
        "class_names": list(class_names),
        "split": {k: len(v) for k, v in parts.items()},
        "images_sha256": hashlib.sha256(images.numpy().tobytes()).hexdigest(),
    }
    return OwnImages(images, labels, spec, parts, record, source.name)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _classes(folder: Path) -> tuple[str, ...]:
    return tuple(p.name for p in _subfolders(folder))


def _folder(folder: Path) -> list[tuple[Path, int]]:
    """(file, label) in sorted path order, so that the order never depends on the filesystem."""
    loose = sorted(p for p in folder.iterdir() if _is_image(p))
    subfolders = _subfolders(folder)
    if not subfolders:
        if not loose:
            raise DataError(f"{folder}: no PNG, JPEG or WebP images in it")
        return [(p, 0) for p in loose]
    if loose:
        raise DataError(f"{loose[0]}: an image beside the class subfolders of {folder}; move it "
                        "into its class's folder")  # fmt: skip
    items = []
    for label, sub in enumerate(subfolders):
        found = sorted(
            (p for p in sub.rglob("*") if _is_image(p)), key=lambda p: p.relative_to(sub).as_posix()
        )
        if len(found) < 2:
            what = f"{found[0]}: the only image" if found else f"{sub}: no image"
            raise DataError(f"{what} of class folder {sub.name!r}; each class needs at least 2 "
                            "images (one may be held out)")  # fmt: skip
        items += [(p, label) for p in found]
    return items


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()  # the file is closed on leaving
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable PNG, JPEG or WebP image ({e})") from None


def _npz(path: Path) -> tuple[list[tuple[str, Any, int]], tuple[str, ...]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # a zip, pickle or format error: whichever, the file is unusable
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if "images" not in arrays:
        raise DataError(f"{path}: no 'images' array (it has {', '.join(arrays) or 'none'})")
    images = _npz_images(path, arrays["images"])
    n = len(images)
    class_names: tuple[str, ...] = ()
    labels = np.zeros(n, dtype=np.int64)
    if "labels" in arrays:
        given = arrays["labels"]
        if given.shape != (n,) or not np.issubdtype(given.dtype, np.integer):
            raise DataError(f"{path}: 'labels' must be {n} integers, one per image; got "
                            f"{given.dtype} {given.shape}")  # fmt: skip
        labels = given.astype(np.int64)
        if "class_names" in arrays:
            class_names = tuple(str(c) for c in arrays["class_names"].reshape(-1))
        else:
            class_names = tuple(str(k) for k in range(int(labels.max(initial=0)) + 1))
        if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(class_names):
            raise DataError(f"{path}: labels must lie in 0..{len(class_names) - 1}")
        counts = np.bincount(labels, minlength=len(class_names))
        for k, count in enumerate(counts):
            if count < 2:
                images_ = "image" if count == 1 else "images"
                raise DataError(f"{path}: class {k} ({class_names[k]!r}) has {count} {images_}; "
                                "each class needs at least 2")  # fmt: skip
    pictures = [
        (f"{path}: image {i}", lambda a=a: Image.fromarray(a), int(label))
        for i, (a, label) in enumerate(zip(images, labels, strict=True))
    ]
    return pictures, class_names


def _npz_images(path: Path, images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8."""
    if images.ndim == 4 and images.shape[-1] not in (1, 3, 4) and images.shape[1] in (1, 3, 4):
        images = images.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (3, 4))):
        raise DataError(f"{path}: 'images' has shape {images.shape}; expected (N, H, W), "
                        "(N, H, W, C) or (N, C, H, W) with C 1, 3 or 4")  # fmt: skip
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    if np.issubdtype(images.dtype, np.floating):
        if images.size and (np.isnan(images).any() or images.min() < 0 or images.max() > 1):
            raise DataError(f"{path}: float 'images' must lie in [0, 1]")
        return np.rint(images * 255).astype(np.uint8)
    if np.issubdtype(images.dtype, np.integer) or images.dtype == np.bool_:
        if images.size and (images.min() < 0 or images.max() > 255):
            raise DataError(f"{path}: integer 'images' must lie in 0..255")
        return images.astype(np.uint8)
    raise DataError(f"{path}: 'images' of dtype {images.dtype}; uint8, or floats in [0, 1]")


def _decode_all(path: Path, pictures: list[tuple[str, Any, int]], size: int | None) -> np.ndarray:
    """(N, S, S, 3) uint8: every image as RGB (grey ones with R = G = B)."""
    out: np.ndarray | None = None
    first = ""
    for i, (name, open_image, _) in enumerate(pictures):
        img = _rgb(open_image())
        w, h = img.size
        if size is None:
            if out is None:
                if w != h:
                    raise DataError(f"{name}: {w}×{h} is not square; pass --size N to crop the "
                                    "centre square and resize to N×N")  # fmt: skip
                if not MIN_SIZE <= w <= MAX_SIZE:
                    raise DataError(f"{name}: {w}×{h} pixels; images of {MIN_SIZE} to "
                                    f"{MAX_SIZE} pixels are taken as they are: pass --size N to "
                                    "resize")  # fmt: skip
                first = name
            elif (w, h) != out.shape[1:3][::-1]:
                raise DataError(f"{name}: {w}×{h}, but {first} is {out.shape[2]}×{out.shape[1]}; "
                                "pass --size N to resize them all to N×N")  # fmt: skip
        else:
            img = _square(img, size)
        if out is None:
            out = np.empty((len(pictures), img.size[1], img.size[0], 3), dtype=np.uint8)
        out[i] = np.asarray(img)
    assert out is not None
    return out


def _rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB; transparency composited onto black; 16-bit grey scaled to 8 bits."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(img, dtype=np.float64)
        if a.max(initial=0) > 255:
            a = a / 257
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")


def _square(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img


def _luma(rgb: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) -> (N, H, W, 1): Pillow's "L" conversion (ITU-R 601-2 luma)."""
    return np.stack([np.asarray(Image.fromarray(a).convert("L")) for a in rgb])[..., None]


def _split(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Indices of each split: within each class a fixed shuffle, spread evenly over [0, 1]; the
    images in that order, the last 10% to test and the 10% before them held out."""
    n = len(labels)
    g = torch.Generator().manual_seed(SPLIT_SEED)
    position = torch.empty(n, dtype=torch.float64)
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        ranks = torch.randperm(len(members), generator=g)
        position[members] = (ranks.double() + 0.5) / len(members)
    order = torch.sort(position, stable=True).indices
    n_test = max(1, round(n * TEST_FRACTION))
    n_held = max(1, round(n * HELDOUT_FRACTION))
    n_train = n - n_test - n_held
    return {
        "train": order[:n_train],
        "heldout": order[n_train : n_train + n_held],
        "test": order[n_train + n_held :],
    }

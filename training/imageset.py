"""What every dataset, shipped or one's own, is made of and described by: the names of its
splits, a split's images and labels (``ImageSet``), the shape and classes that size a model
(``DataSpec``), and the error that one's own images cannot be used (``DataError``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

SPLITS = ("train", "heldout", "test")


class DataError(ValueError):
    """One's own images cannot be used as they are; the message names the file or folder."""


@dataclass(frozen=True)
class DataSpec:
    """The shape of a dataset's images and its classes: what sizes a model's layers."""

    image_shape: tuple[int, int, int]
    """(C, H, W)"""
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    def float_images(self) -> torch.Tensor:
        """(N, C, H, W) float32 in [0, 1], every value k/255."""
        return self.images.float() / 255.0

"""What the operations take and give: the limits they enforce, one frozen spec per operation,
and one generic result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import numpy as np

from service.generation.labels import Label, LabelInput

Method = Literal["lerp", "slerp"]
P = TypeVar("P")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (SERVICE_MAX_* and the queue settings)."""

    max_n: int = 64
    """Images one sampling makes."""
    max_autoregressive_n: int = 16
    """Images, or completions, one pixel-by-pixel sampling makes."""
    max_images: int = 64
    """Input images of one request."""
    queue_limit: int = 256
    """Most autoregressive samplings waiting for their turn (batched graphs have their own)."""
    queue_timeout: float = 0.0
    """Seconds a sampling may wait for its turn; 0: no limit."""
    max_iwae_k: int = 1000
    """Importance samples per image when scoring a VAE."""
    max_iwae_samples: int = 6400
    """Decoder runs one VAE scoring may cost: images x k (x classes, unlabelled)."""
    interactive_n: int = 4
    """A pixel-by-pixel sampling of at most this many images waits for its slot as an
    interactive request, unless its caller states its class."""


@dataclass(frozen=True)
class Endpoint:
    """A latent given by exactly one of an image (through the encoder), a latent vector or a
    seed (row 0 of that seed's latents)."""

    image: Any = None
    latent: Sequence[float] | None = None
    seed: int | None = None


@dataclass(frozen=True)
class SampleSpec:
    n: int = 1
    seed: int | None = None
    """None: one is drawn, and the result gives it."""
    temperature: float | None = None
    truncation: float | None = None
    label: LabelInput = None
    """A conditional model's class for every image; None: each image's class from the seed."""


@dataclass(frozen=True)
class EncodeSpec:
    images: Sequence[Any]
    label: LabelInput = None


@dataclass(frozen=True)
class ReconstructSpec:
    images: Sequence[Any]
    label: LabelInput = None


@dataclass(frozen=True)
class InterpolateSpec:
    start: Endpoint
    end: Endpoint
    steps: int = 8
    method: Method = "lerp"
    label: Label | None = None


@dataclass(frozen=True)
class TraverseSpec:
    base: Endpoint
    """With no image, latent or seed, a seed is drawn."""
    dim: int
    span: tuple[float, float] = (-3.0, 3.0)
    steps: int = 8
    label: Label | None = None


@dataclass(frozen=True)
class ScoreSpec:
    images: Sequence[Any]
    k: int | None = None
    seed: int | None = None
    label: LabelInput = None


@dataclass(frozen=True)
class Given:
    """Which pixels a client gives: exactly one of the top ``rows``, or a ``mask`` image
    (1 = keep, 0 = generate)."""

    rows: int | None = None
    mask: Any = None


@dataclass(frozen=True)
class CompleteSpec:
    images: Sequence[Any]
    given: Given
    samples: int = 1
    seed: int | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class Result(Generic[P]):
    """What an operation gives: its payload (the images as ``finish`` made them, or the
    operation's arrays), the images' shape, the seed used and the classes drawn with."""

    model: str
    version: int
    payload: P
    shape: tuple[int, ...] = ()
    """(B, C, H, W) of the images, when there are images."""
    seed: int | None = None
    labels: list[str] | None = None
    """A conditional model's class names, one per image (or the one of a whole strip)."""
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    """The operation's other outputs: latents, per-image errors, scores."""

    @property
    def count(self) -> int:
        """Images produced."""
        return self.shape[0] if self.shape else 0

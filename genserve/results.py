"""What each operation returns: frozen dataclasses that follow the API's response bodies, with
images as read-only float32 arrays in [0, 1] and numbers as arrays. ``raw`` is the response's
JSON as the service sent it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from PIL import Image

from genserve.images import decode_images, image_axes, tile

Json = dict[str, Any]
ModelState = Literal["loading", "ready", "failed", "unsupported", "unloaded"]


def _floats(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    array.setflags(write=False)
    return array


def _optional_strings(values: Any) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


_READ: dict[str, Callable[[Any], Any]] = {
    "np.ndarray": _floats,
    "np.ndarray | None": lambda values: None if values is None else _floats(values),
    "tuple[str, ...] | None": _optional_strings,
    "tuple[int, ...]": tuple,
}
"""How a field of each annotation is read from the body (any other: as it is)."""


class _Parsed:
    """``from_json`` for a result that follows its response body field by field."""

    @classmethod
    def from_json(cls, body: Json, **given: Any) -> Self:
        """Each field without a default from ``body``, by its annotation (one that may be None
        is optional, ``images`` are decoded); ``raw``: the body; ``given``: the call's."""
        values: Json = {"raw": body, **given}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in values or f.default is not MISSING:
                continue
            kind = str(f.type)
            value = body.get(f.name) if kind.endswith("| None") else body[f.name]
            read = _images if f.name == "images" else _READ.get(kind, _same)
            values[f.name] = read(value)
        return cls(**values)


def _images(value: Any) -> np.ndarray:
    return decode_images(value)


def _same(value: Any) -> Any:
    return value


class ImageResult:
    """Helpers of every result that holds images: ``images`` is (N, H, W) (a completion's
    (images, samples, H, W)), or for a colour model (N, H, W, 3) (RGB, channels last)."""

    images: np.ndarray

    @property
    def _grid_columns(self) -> int | None:
        """Images per row of ``grid`` by default (None: about square)."""
        return None

    @property
    def _flat(self) -> np.ndarray:
        return self.images.reshape(-1, *self.images.shape[-image_axes(self.images) :])

    def pil(self) -> list[Image.Image]:
        """Each image as an 8-bit PIL image: grayscale (L), or RGB for a colour model."""
        return [Image.fromarray(tile(image[None])) for image in self._flat]

    def grid(self, columns: int | None = None, scale: int = 1) -> Image.Image:
        """Every image in one PIL image, ``columns`` to a row, 2 black pixels between tiles,
        the whole grid ``scale`` times larger: what the API's ``Accept: image/png`` gives."""
        return Image.fromarray(tile(self._flat, columns or self._grid_columns, scale))

    def save_grid(
        self, path: str | os.PathLike[str], columns: int | None = None, scale: int = 1
    ) -> Path:
        """Write ``grid(columns, scale)`` to ``path`` (the format from its suffix) and return
        the path."""
        target = Path(path)
        self.grid(columns, scale).save(target)
        return target


@dataclass(frozen=True)
class SamplingInfo:
    """How an autoregressive model samples, and how long its last runs took per image."""

    method: Literal["windowed", "row_step", "naive"]
    description: str
    seconds_per_image: float | None
    measured_runs: int

    @classmethod
    def from_json(cls, body: Json) -> SamplingInfo:
        runs = body.get("measured_runs", 0)
        return cls(body["method"], body["description"], body.get("seconds_per_image"), runs)


@dataclass(frozen=True)
class ModelInfo:
    """A model of the store, as ``GET /models/{name}`` describes it."""

    name: str
    state: ModelState
    reason: str | None
    version: int | None
    family: str | None
    dataset: str | None
    operations: tuple[str, ...]
    image_shape: tuple[int, ...] | None
    latent_dim: int | None
    conditional: bool
    class_names: tuple[str, ...] | None
    metrics: dict[str, float | None]
    provider: str | None
    providers: dict[str, str]
    sampling: SamplingInfo | None
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Json) -> ModelInfo:
        sampling = body.get("sampling")
        shape = body.get("image_shape")
        return cls(
            name=body["name"],
            state=body["state"],
            reason=body.get("reason"),
            version=body.get("version"),
            family=body.get("family"),
            dataset=body.get("dataset"),
            operations=tuple(body.get("operations", ())),
            image_shape=None if shape is None else tuple(shape),
            latent_dim=body.get("latent_dim"),
            conditional=bool(body.get("conditional", False)),
            class_names=_optional_strings(body.get("class_names")),
            metrics=dict(body.get("metrics", {})),
            provider=body.get("provider"),
            providers=dict(body.get("providers", {})),
            sampling=None if sampling is None else SamplingInfo.from_json(sampling),
            raw=body,
        )


@dataclass(frozen=True)
class ModelHealth:
    state: ModelState
    version: int | None = None
    provider: str | None = None
    reason: str | None = None

    @classmethod
    def from_json(cls, body: Json) -> ModelHealth:
        return cls(body["state"], body.get("version"), body.get("provider"), body.get("reason"))


@dataclass(frozen=True)
class Health:
    """``live``: ``/health/live`` answered 200. ``ready``, ``models``, and while not ready
    ``error`` and ``code``: ``/health/ready`` (a 503 there is an answer, not an error)."""

    live: bool
    ready: bool
    models: dict[str, ModelHealth]
    error: str | None
    code: str | None
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, live: bool, body: Json) -> Health:
        ready = bool(body["ready"])
        models = {name: ModelHealth.from_json(m) for name, m in body.get("models", {}).items()}
        return cls(live, ready, models, body.get("error"), body.get("code"), raw=body)


@dataclass(frozen=True, eq=False)
class SampleResult(_Parsed, ImageResult):
    """``images`` (n, H, W); ``seed`` draws them again; ``labels``: a conditional model's class
    of each image; ``columns``: the call's, the default of ``grid``."""

    model: str
    version: int
    seed: int
    images: np.ndarray
    labels: tuple[str, ...] | None
    columns: int | None = None
    raw: Json = field(default_factory=dict, repr=False)

    @property
    def _grid_columns(self) -> int | None:
        return self.columns


@dataclass(frozen=True, eq=False)
class EncodeResult(_Parsed):
    """A VAE's posterior ``mean`` and ``log_var``, or an autoencoder's code ``z``, (B, D)."""

    model: str
    version: int
    mean: np.ndarray | None
    log_var: np.ndarray | None
    z: np.ndarray | None
    raw: Json = field(default_factory=dict, repr=False)

    @property
    def latents(self) -> np.ndarray:
        """The latent each image maps to: ``mean``, or ``z`` for an autoencoder."""
        latents = self.mean if self.mean is not None else self.z
        assert latents is not None, "the service answered neither mean nor z"
        return latents


@dataclass(frozen=True, eq=False)
class ReconstructResult(_Parsed, ImageResult):
    """``images`` (B, H, W), decoded from each input's posterior mean; ``error``: each one's mean
    squared error against its input, on [0, 1] pixels."""

    model: str
    version: int
    images: np.ndarray
    error: np.ndarray
    raw: Json = field(default_factory=dict, repr=False)


@dataclass(frozen=True, eq=False)
class InterpolateResult(_Parsed, ImageResult):
    """``images`` (steps, H, W), both ends included, and the decoded ``latents`` (steps, D).
    ``grid`` makes one strip by default."""

    model: str
    version: int
    images: np.ndarray
    latents: np.ndarray
    raw: Json = field(default_factory=dict, repr=False)

    @property
    def _grid_columns(self) -> int | None:
        return len(self.images)


@dataclass(frozen=True, eq=False)
class ScoreResult(_Parsed):
    """Per image: ``bits_per_dim`` (lower: more likely), ``log_likelihood`` (nats; a lower
    bound for ``kind`` "iwae", with ``k`` importance samples from ``seed``),
    ``png_bits_per_dim``, ``anomaly_score`` (higher: more anomalous); ``labels`` scored under."""

    model: str
    version: int
    kind: Literal["exact", "iwae"]
    bits_per_dim: np.ndarray
    log_likelihood: np.ndarray
    png_bits_per_dim: np.ndarray
    anomaly_score: np.ndarray
    k: int | None
    seed: int | None
    labels: tuple[str, ...] | None
    raw: Json = field(default_factory=dict, repr=False)


@dataclass(frozen=True, eq=False)
class CompleteResult(ImageResult):
    """``images`` (images, samples, H, W): each input's completions; completion i drew from
    ``seeds[i]``. ``grid`` puts each input's completions on one row."""

    model: str
    version: int
    seeds: tuple[int, ...]
    images: np.ndarray
    raw: Json = field(default_factory=dict, repr=False)

    @property
    def _grid_columns(self) -> int | None:
        return int(self.images.shape[1])

    @classmethod
    def from_json(cls, body: Json) -> CompleteResult:
        images = np.stack([decode_images(completions) for completions in body["images"]])
        images.setflags(write=False)
        return cls(body["model"], body["version"], tuple(body["seeds"]), images, raw=body)


@dataclass(frozen=True, eq=False)
class TraverseResult(_Parsed, ImageResult):
    """``images`` (steps, H, W) with latent dimension ``dim`` set to each of ``values``;
    ``seed`` or ``label`` when drawn or used. ``grid``: one strip, or the call's ``columns``."""

    model: str
    version: int
    seed: int | None
    dim: int
    values: np.ndarray
    label: str | None
    images: np.ndarray
    latents: np.ndarray
    columns: int | None = None
    raw: Json = field(default_factory=dict, repr=False)

    @property
    def _grid_columns(self) -> int | None:
        return self.columns or len(self.images)


# ---------------------------------------------------------------- events of a stream


@dataclass(frozen=True)
class Progress:
    """A ``progress`` event: ``rows_done`` of ``rows`` drawn (0 at once, then one more after
    each row), ``elapsed_s`` so far, ``eta_s`` the seconds left (None until a row is done)."""

    rows_done: int
    rows: int
    elapsed_s: float
    eta_s: float | None

    @property
    def fraction(self) -> float:
        """``rows_done / rows``, from 0 to 1."""
        return self.rows_done / self.rows if self.rows else 1.0

    @classmethod
    def from_json(cls, body: Json) -> Progress:
        done, rows, elapsed = int(body["rows_done"]), int(body["rows"]), float(body["elapsed_s"])
        eta = body.get("eta_s")
        return cls(done, rows, elapsed, None if eta is None else float(eta))


@dataclass(frozen=True, eq=False)
class Partial(ImageResult):
    """A ``partial`` event of a stream: every image's canvas once ``rows_done`` rows are drawn,
    rows not drawn yet black (a completion's: its kept pixels), in the result's layout at the
    model's size (``scale`` enlarges the result only); ``grid()`` and the rest as on a result."""

    rows_done: int
    images: np.ndarray = field(repr=False)
    raw: Json = field(default_factory=dict, repr=False)

    @property
    def _grid_columns(self) -> int | None:
        grouped = self.images.ndim - image_axes(self.images) == 2  # (images, samples, ...)
        return int(self.images.shape[1]) if grouped else None

    @classmethod
    def from_json(cls, body: Json, samples: int | None = None) -> Partial:
        """``samples``: a completion's per input image, which groups the canvases by input."""
        images = decode_images(body["images"])
        if samples is not None:
            images = images.reshape(-1, samples, *images.shape[1:])
        return cls(rows_done=int(body["rows_done"]), images=images, raw=body)

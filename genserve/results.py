"""What each operation returns: frozen dataclasses that follow the API's response bodies, with
images as read-only float32 arrays in [0, 1] and numbers as arrays. ``raw`` is the response's
JSON as the service sent it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from genserve.images import decode_images, tile

Json = dict[str, Any]
ModelState = Literal["loading", "ready", "failed", "unsupported", "unloaded"]


def _floats(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    array.setflags(write=False)
    return array


def _optional_floats(values: Any) -> np.ndarray | None:
    return None if values is None else _floats(values)


def _optional_strings(values: Any) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


class ImageResult:
    """Helpers of every result that holds images: ``images`` is (N, H, W) (a completion's
    (images, samples, H, W))."""

    images: np.ndarray

    @property
    def _grid_columns(self) -> int | None:
        """Images per row of ``grid`` by default (None: about square)."""
        return None

    @property
    def _flat(self) -> np.ndarray:
        return self.images.reshape(-1, *self.images.shape[-2:])

    def pil(self) -> list[Image.Image]:
        """Each image as an 8-bit grayscale PIL image."""
        return [Image.fromarray(tile(image[None])) for image in self._flat]

    def grid(self, columns: int | None = None, scale: int = 1) -> Image.Image:
        """Every image in one PIL image, ``columns`` to a row, 2 black pixels between tiles,
        the whole grid ``scale`` times larger: what the API's ``Accept: image/png`` gives."""
        return Image.fromarray(tile(self._flat, columns or self._grid_columns, scale))

    def save_grid(
        self, path: str | os.PathLike[str], columns: int | None = None, scale: int = 1
    ) -> Path:
        """Write ``grid(columns, scale)`` to ``path`` (the format from its suffix; PNG keeps
        every pixel) and return the path."""
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
        return cls(
            method=body["method"],
            description=body["description"],
            seconds_per_image=body.get("seconds_per_image"),
            measured_runs=body.get("measured_runs", 0),
        )


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
        return cls(
            live=live,
            ready=bool(body["ready"]),
            models={name: ModelHealth.from_json(m) for name, m in body.get("models", {}).items()},
            error=body.get("error"),
            code=body.get("code"),
            raw=body,
        )


@dataclass(frozen=True, eq=False)
class SampleResult(ImageResult):
    """``images`` (n, H, W); ``seed`` draws them again; ``labels``: a conditional model's class
    of each image."""

    model: str
    version: int
    seed: int
    images: np.ndarray
    labels: tuple[str, ...] | None
    columns: int | None = None
    """The call's ``columns``: the default of ``grid``."""
    raw: Json = field(default_factory=dict, repr=False)

    @property
    def _grid_columns(self) -> int | None:
        return self.columns

    @classmethod
    def from_json(cls, body: Json, columns: int | None = None) -> SampleResult:
        return cls(
            model=body["model"],
            version=body["version"],
            seed=body["seed"],
            images=decode_images(body["images"]),
            labels=_optional_strings(body.get("labels")),
            columns=columns,
            raw=body,
        )


@dataclass(frozen=True, eq=False)
class EncodeResult:
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

    @classmethod
    def from_json(cls, body: Json) -> EncodeResult:
        return cls(
            model=body["model"],
            version=body["version"],
            mean=_optional_floats(body.get("mean")),
            log_var=_optional_floats(body.get("log_var")),
            z=_optional_floats(body.get("z")),
            raw=body,
        )


@dataclass(frozen=True, eq=False)
class ReconstructResult(ImageResult):
    """``images`` (B, H, W), decoded from each input's posterior mean; ``error``: each one's mean
    squared error against its input, on [0, 1] pixels."""

    model: str
    version: int
    images: np.ndarray
    error: np.ndarray
    raw: Json = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Json) -> ReconstructResult:
        return cls(
            model=body["model"],
            version=body["version"],
            images=decode_images(body["images"]),
            error=_floats(body["error"]),
            raw=body,
        )


@dataclass(frozen=True, eq=False)
class InterpolateResult(ImageResult):
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

    @classmethod
    def from_json(cls, body: Json) -> InterpolateResult:
        return cls(
            model=body["model"],
            version=body["version"],
            images=decode_images(body["images"]),
            latents=_floats(body["latents"]),
            raw=body,
        )


@dataclass(frozen=True, eq=False)
class ScoreResult:
    """Per image: ``bits_per_dim`` (lower is more likely), ``log_likelihood`` (nats; for
    ``kind`` "iwae" a lower bound), ``png_bits_per_dim`` and ``anomaly_score`` (higher is more
    anomalous). ``k`` and ``seed``: the importance samples of an IWAE bound; ``labels``: the
    classes a conditional model scored under."""

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

    @classmethod
    def from_json(cls, body: Json) -> ScoreResult:
        return cls(
            model=body["model"],
            version=body["version"],
            kind=body["kind"],
            bits_per_dim=_floats(body["bits_per_dim"]),
            log_likelihood=_floats(body["log_likelihood"]),
            png_bits_per_dim=_floats(body["png_bits_per_dim"]),
            anomaly_score=_floats(body["anomaly_score"]),
            k=body.get("k"),
            seed=body.get("seed"),
            labels=_optional_strings(body.get("labels")),
            raw=body,
        )


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
        per_input = [decode_images(completions) for completions in body["images"]]
        images = np.stack(per_input)
        images.setflags(write=False)
        return cls(
            model=body["model"],
            version=body["version"],
            seeds=tuple(body["seeds"]),
            images=images,
            raw=body,
        )


@dataclass(frozen=True, eq=False)
class TraverseResult(ImageResult):
    """``images`` (steps, H, W) with latent dimension ``dim`` set to each of ``values``;
    ``seed`` or ``label`` when they were drawn or used. ``grid`` makes one strip by default
    (or ``columns`` to a row, the call's)."""

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

    @classmethod
    def from_json(cls, body: Json, columns: int | None = None) -> TraverseResult:
        return cls(
            model=body["model"],
            version=body["version"],
            seed=body.get("seed"),
            dim=body["dim"],
            values=_floats(body["values"]),
            label=body.get("label"),
            images=decode_images(body["images"]),
            latents=_floats(body["latents"]),
            columns=columns,
            raw=body,
        )


# ---------------------------------------------------------------- events of a stream


@dataclass(frozen=True)
class Progress:
    """A ``progress`` event of a stream: ``rows_done`` of ``rows`` drawn (0 at once, then one
    more after each row), ``elapsed_s`` since the service took the request, and ``eta_s`` its
    estimate of the seconds left (None until a row is done)."""

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
        eta = body.get("eta_s")
        return cls(
            rows_done=int(body["rows_done"]),
            rows=int(body["rows"]),
            elapsed_s=float(body["elapsed_s"]),
            eta_s=None if eta is None else float(eta),
        )


@dataclass(frozen=True, eq=False)
class Partial(ImageResult):
    """A ``partial`` event of a stream: every image's canvas once ``rows_done`` rows are drawn,
    rows not drawn yet black (a completion's: its kept pixels). ``images`` has the layout of the
    result's, (n, H, W) for a sampling and (images, samples, H, W) for a completion, at the
    model's size (``scale`` enlarges the result only); ``grid()`` and the rest work as on a
    result."""

    rows_done: int
    images: np.ndarray = field(repr=False)
    raw: Json = field(default_factory=dict, repr=False)

    @property
    def _grid_columns(self) -> int | None:
        return int(self.images.shape[1]) if self.images.ndim == 4 else None

    @classmethod
    def from_json(cls, body: Json, samples: int | None = None) -> Partial:
        """``samples``: a completion's per input image, which groups the canvases by input."""
        images = decode_images(body["images"])
        if samples is not None:
            images = images.reshape(-1, samples, *images.shape[1:])
        return cls(rows_done=int(body["rows_done"]), images=images, raw=body)

"""Request and response bodies, named for their role. Images are [0, 1] NCHW, with the model's
channels (1: grayscale, 3: RGB)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    model_validator,
)

from service.generation.imaging import ImageFormat
from service.registry.families import KNOB_BOUNDS


def _string_or_array(value: Any) -> Any:
    if not isinstance(value, str | list):
        raise ValueError("expected a base64 PNG string or a nested array of numbers")
    return value


ImageInput = Annotated[
    str | list[Any],
    BeforeValidator(_string_or_array),
    Field(
        description="A base64 PNG at the model's size (its card's shape), or a nested array of "
        "floats in [0, 1] shaped (H, W), (1|3|4, H, W) or (H, W, 1|3|4). Grayscale, RGB or RGBA "
        "is converted to the model's channels: RGB to gray by luma, gray to RGB by repetition, "
        "alpha dropped.",
    ),
]
ImageOutput = Annotated[
    str | list[Any],
    Field(description="A base64 PNG (format=png) or a (C, H, W) nested array in [0, 1]."),
]
ModelName = Annotated[
    str | None,
    Field(description="Model to use; omitted means the configured default for the operation."),
]
FormatField = Annotated[
    ImageFormat, Field(description="png: base64 PNG strings; array: floats in [0, 1].")
]
Label = Annotated[
    StrictStr | StrictInt,
    Field(
        description="A class of a conditional (cvae) model: a name from its card's class_names "
        '(any case, e.g. "sneaker") or its index.'
    ),
]
Seed = Annotated[int, Field(ge=0, lt=2**64)]
MAX_SCALE = 8
Scale = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_SCALE,
        description="PNG outputs only: each pixel becomes a scale x scale square (nearest "
        "neighbour), so that images are large enough to look at.",
    ),
]
Columns = Annotated[
    int,
    Field(ge=1, le=64, description="With `Accept: image/png`: images per row of the PNG grid."),
]


Temperature = Annotated[float, Field(**KNOB_BOUNDS["temperature"])]
Truncation = Annotated[float, Field(**KNOB_BOUNDS["truncation"])]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


MAX_TIMEOUT_MS = 3_600_000
TimeoutMs = Annotated[
    int | None,
    Field(
        ge=1,
        le=MAX_TIMEOUT_MS,
        description="A deadline, in ms from when the request is taken: past it the work stops "
        "and the answer is 504 `deadline_exceeded`. Omitted: no deadline (the service's own "
        "queue limits still apply).",
    ),
]


class _ImagesOut(_Request):
    """A request whose answer holds images: ``scale`` applies to PNG ones only."""

    if TYPE_CHECKING:  # declared by each request, where they read best in the schema
        format: ImageFormat
        scale: int

    @model_validator(mode="after")
    def _scale_is_for_png(self) -> Self:
        if self.scale != 1 and self.format == "array":
            raise ValueError("scale applies to PNG images, not to format 'array'")
        return self


class _Response(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    error: str = Field(description="What is wrong, in words.")
    code: str = Field(description="snake_case error code, e.g. model_not_found.")
    details: list[ErrorDetail] | None = Field(
        default=None, description="Request-validation errors."
    )


class SampleRequest(_ImagesOut):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "vae-fashion", "n": 4, "seed": 42}]}
    )

    model: ModelName = None
    n: int = Field(
        default=1,
        ge=1,
        description="How many images; at most SERVICE_MAX_N (SERVICE_MAX_AUTOREGRESSIVE_N for "
        "a PixelCNN or PixelRNN).",
    )
    seed: int | None = Field(
        default=None, ge=0, lt=2**64, description="Omitted: one is drawn and echoed back."
    )
    format: FormatField = "png"
    scale: Scale = 1
    columns: Columns | None = None
    temperature: Temperature | None = Field(
        default=None,
        description="PixelCNN and PixelRNN only: scales logits and logistic noise (1=exact).",
    )
    truncation: Truncation | None = Field(
        default=None,
        description="GANs only: latent entries with |z| > truncation are redrawn until inside.",
    )
    label: Label | None = Field(
        default=None,
        description="Conditional models only: the class to draw. Omitted: each image's class is "
        "drawn from the seed.",
    )
    timeout_ms: TimeoutMs = None


class SampleResponse(_Response):
    model: str
    version: int
    seed: int = Field(description="The seed used; send it again to get the same images.")
    shape: list[int] = Field(description="(n, C, H, W)")
    images: list[ImageOutput]
    labels: list[str] | None = Field(
        default=None, description="Conditional models only: each image's class."
    )


ImageLabels = Annotated[
    Label | list[Label] | None,
    Field(
        description="Conditional models only, and required there: one class for every image, "
        "or a list with one per image."
    ),
]


class EncodeRequest(_Request):
    model: ModelName = None
    images: list[ImageInput] = Field(min_length=1)
    label: ImageLabels = None
    timeout_ms: TimeoutMs = None


class EncodeResponse(_Response):
    model: str
    version: int
    mean: list[list[float]] | None = Field(default=None, description="VAE: posterior mean, (B, D).")
    log_var: list[list[float]] | None = Field(
        default=None, description="VAE: posterior log-variance."
    )
    z: list[list[float]] | None = Field(default=None, description="Autoencoder: the code, (B, D).")


class ReconstructRequest(_ImagesOut):
    model: ModelName = None
    images: list[ImageInput] = Field(min_length=1)
    format: FormatField = "png"
    scale: Scale = 1
    label: ImageLabels = None
    timeout_ms: TimeoutMs = None


class ReconstructResponse(_Response):
    model: str
    version: int
    images: list[ImageOutput] = Field(description="Decoder output for the encoder's mean.")
    error: list[float] = Field(
        description="Per image: mean squared error between input and reconstruction, over all "
        "pixels, on [0, 1] pixel values."
    )


class InterpolationEnd(_Request):
    """Exactly one of image (needs an encoder), latent (D floats) or seed (row 0 of that seed's
    latents: the image /sample returns for n=1 and that seed)."""

    image: ImageInput | None = None
    latent: list[float] | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**64)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [v for v in (self.image, self.latent, self.seed) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of image, latent or seed")
        return self


class InterpolateRequest(_ImagesOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"start": {"seed": 1}, "end": {"seed": 2}, "steps": 8, "method": "slerp"}]
        }
    )

    model: ModelName = None
    start: InterpolationEnd
    end: InterpolationEnd
    steps: int = Field(default=8, ge=2, le=64, description="Images returned, both ends included.")
    method: Literal["lerp", "slerp"] = "lerp"
    format: FormatField = "png"
    scale: Scale = 1
    label: Label | None = Field(
        default=None,
        description="Conditional models only, and required there: the class of the whole path.",
    )
    timeout_ms: TimeoutMs = None


class InterpolateResponse(_Response):
    model: str
    version: int
    shape: list[int] = Field(description="(steps, C, H, W)")
    images: list[ImageOutput]
    latents: list[list[float]] = Field(description="The decoded latents, (steps, D).")


class ScoreRequest(_Request):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "pixelcnn-fashion", "images": ["<base64 PNG>"]}]}
    )

    model: ModelName = None
    images: list[ImageInput] = Field(min_length=1)
    k: int | None = Field(
        default=None,
        ge=1,
        description="VAE families only: importance samples per image (default 100, at most "
        "SERVICE_MAX_IWAE_K). More is a tighter bound and slower.",
    )
    seed: Seed | None = Field(
        default=None,
        description="VAE families only: the importance samples' seed. Omitted: one is drawn and "
        "echoed back.",
    )
    label: ImageLabels = Field(
        default=None,
        description="Conditional models only: score log p(x | label). Omitted: log p(x) under "
        "the uniform mixture of the classes (one bound per class, so k x classes decoder runs).",
    )
    timeout_ms: TimeoutMs = None


class ScoreResponse(_Response):
    model: str
    version: int
    kind: Literal["exact", "iwae"] = Field(
        description="exact: the model's log-likelihood (autoregressive families). iwae: the "
        "importance-weighted lower bound on it, so bits_per_dim is an upper bound in expectation."
    )
    bits_per_dim: list[float] = Field(
        description="Per image: -log2 p(x) / (C H W), on the image quantised to 8 bits."
    )
    log_likelihood: list[float] = Field(
        description="Per image, in nats: log p(x), or its IWAE lower bound."
    )
    png_bits_per_dim: list[float] = Field(
        description="Per image: bits per dimension of the image as a compressed PNG (Pillow, "
        "optimize), a measure of its complexity."
    )
    anomaly_score: list[float] = Field(
        description="Per image: bits_per_dim - png_bits_per_dim, the complexity-corrected "
        "out-of-distribution score (Serra et al. 2020); higher is more anomalous. See "
        "docs/anomaly.md."
    )
    k: int | None = Field(default=None, description="iwae: importance samples per image.")
    seed: int | None = Field(default=None, description="iwae: the seed; send it to repeat.")
    labels: list[str] | None = Field(
        default=None,
        description="Conditional models: the class each image was scored under; absent when "
        "scored under the mixture of all classes.",
    )


class CompleteRequest(_ImagesOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "pixelcnn-fashion", "images": ["<base64 PNG>"], "rows": 14}]
        }
    )

    model: ModelName = None
    images: list[ImageInput] = Field(min_length=1)
    rows: int | None = Field(
        default=None, ge=0, description="Keep the top `rows` rows of each image, draw the rest."
    )
    mask: ImageInput | None = Field(
        default=None,
        description="Instead of rows: one image, 1 = keep the pixel, 0 = draw it (a PNG: white "
        "keeps). Each drawn pixel sees only the pixels before it in raster order.",
    )
    samples: int = Field(default=1, ge=1, description="Completions per image.")
    seed: Seed | None = Field(
        default=None,
        description="Completion i uses seed + i. Omitted: one is drawn and echoed back.",
    )
    temperature: Temperature | None = Field(
        default=None, description="Scales logits and logistic noise (1 = exact)."
    )
    format: FormatField = "png"
    scale: Scale = 1
    timeout_ms: TimeoutMs = None

    @model_validator(mode="after")
    def _rows_or_mask(self) -> Self:
        if (self.rows is None) == (self.mask is None):
            raise ValueError("give exactly one of rows or mask")
        return self


class CompleteResponse(_Response):
    model: str
    version: int
    seeds: list[int] = Field(
        description="Completion i's seed: send it as seed with samples = 1 to get it again."
    )
    shape: list[int] = Field(description="(images, samples, C, H, W)")
    images: list[list[ImageOutput]] = Field(description="Per input image, its completions.")


LatentValue = Annotated[float, Field(ge=-100, le=100)]


class TraverseRequest(_ImagesOut):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "vae-fashion", "dim": 3, "steps": 9, "seed": 7}]}
    )

    model: ModelName = None
    dim: int = Field(ge=0, description="The latent dimension to vary, 0 to latent_dim - 1.")
    range: tuple[LatentValue, LatentValue] = Field(
        default=(-3.0, 3.0), description="The values dim takes: first and last, both included."
    )
    steps: int = Field(default=8, ge=2, le=64, description="Images in the strip.")
    seed: Seed | None = Field(
        default=None,
        description="Base latent: row 0 of that seed's latents (the image /sample gives for "
        "n = 1). Omitted with no image or latent: one is drawn and echoed back.",
    )
    image: ImageInput | None = Field(
        default=None, description="Base latent: the image's posterior mean."
    )
    latent: list[float] | None = Field(default=None, description="Base latent, D floats.")
    label: Label | None = Field(
        default=None,
        description="Conditional models: the class to decode with; required with an image or a "
        "latent, drawn from the seed as /sample does otherwise.",
    )
    format: FormatField = "png"
    scale: Scale = 1
    columns: Columns | None = None
    timeout_ms: TimeoutMs = None

    @model_validator(mode="after")
    def _one_base(self) -> Self:
        if sum(v is not None for v in (self.image, self.latent, self.seed)) > 1:
            raise ValueError("give at most one of image, latent or seed")
        return self


class TraverseResponse(_Response):
    model: str
    version: int
    seed: int | None = Field(default=None, description="The base latent's seed, if from one.")
    dim: int
    values: list[float] = Field(description="The value of dim in each image.")
    label: str | None = Field(default=None, description="Conditional models: the class used.")
    shape: list[int] = Field(description="(steps, C, H, W)")
    images: list[ImageOutput]
    latents: list[list[float]] = Field(description="The decoded latents, (steps, D).")


class SamplingInfo(_Response):
    method: Literal["windowed", "row_step", "naive"]
    description: str
    seconds_per_image: float | None = Field(
        description="Median wall-clock seconds per image of this service's last "
        "sampling runs of this model (null until one has run). Pixel-by-pixel sampling is slow: "
        "read this before asking for many images."
    )
    measured_runs: int = Field(description="Sampling runs since the model was loaded.")


class ModelInfo(_Response):
    name: str
    state: Literal["loading", "ready", "failed", "unsupported", "unloaded"]
    reason: str | None = Field(
        default=None,
        description="Why the model failed, or, while it serves from memory, what is wrong with "
        "its files in the store.",
    )
    version: int | None = None
    family: str | None = None
    dataset: str | None = None
    operations: list[str] = Field(default_factory=list)
    image_shape: list[int] | None = Field(default=None, description="(C, H, W)")
    latent_dim: int | None = None
    conditional: bool = Field(
        default=False, description="Takes a class label (sample, encode, ...): a cvae."
    )
    class_names: list[str] | None = Field(default=None, description="The card's classes, by index.")
    metrics: dict[str, float | None] = Field(default_factory=dict)
    provider: str | None = Field(default=None, description="Execution provider in use.")
    providers: dict[str, str] = Field(default_factory=dict, description="Per graph role.")
    sampling: SamplingInfo | None = Field(
        default=None,
        description="Autoregressive models (pixelcnn, pixelrnn): how they are sampled, and how "
        "long it takes here.",
    )


class ModelList(_Response):
    models: list[ModelInfo]


class LiveResponse(_Response):
    status: Literal["alive"] = "alive"


class ModelHealth(_Response):
    state: Literal["loading", "ready", "failed", "unsupported", "unloaded"]
    version: int | None = None
    provider: str | None = None
    reason: str | None = None


class ReadyResponse(_Response):
    ready: bool
    models: dict[str, ModelHealth]
    error: str | None = Field(default=None, description="Why the service is not ready (503 only).")
    code: str | None = Field(default=None, description="not_ready (503 only).")


class ModelChangeResponse(_Response):
    model: str
    action: Literal["load", "unload", "reload"]
    changed: bool = Field(description="False when there was nothing to do.")
    state: Literal["loading", "ready", "failed", "unsupported", "unloaded"]
    version: int | None = Field(default=None, description="The version now in place.")
    previous_version: int | None = Field(default=None, description="The version it replaced.")
    seconds: float = Field(description="Spent loading and warming the new version.")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    return {status: {"model": ErrorResponse} for status in statuses}

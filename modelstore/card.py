"""The model card, as specified in docs/model-store.md: pydantic only."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TensorSpec(BaseModel):
    name: str
    dtype: str
    shape: list[int]


class CardGraph(BaseModel):
    """One graph as a card lists it: its file and its tensors."""

    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class Likelihood(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: Literal["discretized_logistic", "discretized_logistic_mixture"]
    components: int = Field(ge=1)
    channels: int = Field(default=1, ge=1)
    """The mixture's channels per pixel (pixel families): 1, or 3 for colour."""
    coefficients: bool = False
    """Colour mixtures: G's mean moves by a coefficient times R, B's by two times R and G."""


class WindowedSampler(BaseModel):
    """How the PixelCNN's ``context`` and ``row`` graphs sample exactly (docs/model-store.md)."""

    kind: Literal["windowed"]
    context_rows: int = Field(ge=1)
    row_columns: int = Field(ge=1)


class RowStepSampler(BaseModel):
    """How the PixelRNN's ``step`` graph samples exactly, one row step per pixel, carrying its
    state from row to row (docs/model-store.md)."""

    kind: Literal["row_step"]
    window_rows: int = Field(ge=1)


Sampler = Annotated[WindowedSampler | RowStepSampler, Field(discriminator="kind")]


class FileEntry(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    bytes: int = Field(ge=0)


class ModelCard(BaseModel):
    """A card as specified in docs/model-store.md; unknown keys are kept, not refused."""

    model_config = ConfigDict(extra="allow")

    schema_version: Literal[2]  # layout.SCHEMA_VERSION
    name: str
    version: int = Field(ge=1)
    family: str
    dataset: str | None = None
    image_shape: tuple[int, int, int]
    latent_dim: int | None = Field(default=None, ge=1)
    class_names: list[str] | None = None
    likelihood: Likelihood | None = None
    sampler: Sampler | None = None
    graphs: dict[str, CardGraph]
    metrics: dict[str, float | None] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry]

"""Reading ``model_store/``: folder layout, the model card, and the sha256 check.

The store is a Triton model repository (docs/model-store.md): one Triton model per graph,
``<name>.<role>/<version>/model.onnx`` beside its ``config.pbtxt``, and one card per model
version, ``<name>.v<version>.json``, as a file at the top (Triton loads folders only).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import ChecksumMismatch, StoreError

SCHEMA_VERSION = 2
"""2: files are relative to the store's root, in the Triton layout. 1 was the old layout."""
GRAPH_FILE = "model.onnx"
"""Triton's ``default_model_filename`` for the onnxruntime backend."""
TRITON_CONFIG = "config.pbtxt"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
"""No dots: ``<name>.<role>`` must split one way only."""
CARD_FILE = re.compile(rf"(?P<name>{MODEL_NAME.pattern})\.v(?P<version>[1-9][0-9]*)\.json")
OLD_CARD_FILE = "model.json"


def card_file(name: str, version: int) -> str:
    return f"{name}.v{version}.json"


def graph_model(name: str, role: str) -> str:
    """The Triton model (a folder of the store) that holds one graph of a model."""
    return f"{name}.{role}"


def graph_file(name: str, role: str, version: int) -> str:
    """Where a graph lies, relative to the store's root."""
    return f"{graph_model(name, role)}/{version}/{GRAPH_FILE}"


class TensorSpec(BaseModel):
    name: str
    dtype: str
    shape: list[int]


class GraphSpec(BaseModel):
    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class Likelihood(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: Literal["discretized_logistic", "discretized_logistic_mixture"]
    components: int = Field(ge=1)


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


class FileEntry(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    bytes: int = Field(ge=0)


class ModelCard(BaseModel):
    """A card as specified in docs/model-store.md; unknown keys are kept, not refused."""

    model_config = ConfigDict(extra="allow")

    schema_version: Literal[2]
    name: str
    version: int = Field(ge=1)
    family: str
    dataset: str | None = None
    image_shape: tuple[int, int, int]
    latent_dim: int | None = Field(default=None, ge=1)
    class_names: list[str] | None = None
    likelihood: Likelihood | None = None
    sampler: Annotated[WindowedSampler | RowStepSampler, Field(discriminator="kind")] | None = None
    graphs: dict[str, GraphSpec]
    metrics: dict[str, float | None] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry]


@dataclass(frozen=True)
class StoreEntry:
    """One model of the store: the card of its highest version, or why it cannot be read."""

    name: str
    card_path: Path | None
    problem: str | None = None

    @property
    def folder(self) -> Path:
        """The folder the card's file paths are relative to: the store's root."""
        assert self.card_path is not None, f"{self.name}: {self.problem}"
        return self.card_path.parent


def discover(root: Path) -> list[StoreEntry]:
    """Every model with a card, at its highest version. A folder in the old layout
    (``<name>/<version>/model.json``) is listed with the problem, so that it fails loudly."""
    newest: dict[str, tuple[int, Path]] = {}
    for path in root.iterdir():
        match = CARD_FILE.fullmatch(path.name)
        if match and path.is_file():
            name, version = match["name"], int(match["version"])
            if version > newest.get(name, (0, path))[0]:
                newest[name] = (version, path)
    entries = {name: StoreEntry(name, path) for name, (_, path) in newest.items()}
    for name in old_layout_models(root):
        entries[name] = StoreEntry(
            name,
            None,
            f"{name}/ is in the old store layout; run "
            f"`python -m training.migrate_store {root}` (docs/model-store.md)",
        )
    return [entries[name] for name in sorted(entries)]


def old_layout_models(root: Path) -> list[str]:
    """Folders ``<name>/`` holding ``<version>/model.json``: the layout before Triton's."""
    return sorted(
        folder.name
        for folder in root.iterdir()
        if MODEL_NAME.fullmatch(folder.name) and any(folder.glob(f"[0-9]*/{OLD_CARD_FILE}"))
    )


def read_card(entry: StoreEntry) -> ModelCard:
    if entry.card_path is None:
        raise StoreError(f"{entry.name}: {entry.problem or 'no card found'}")
    path = entry.card_path
    try:
        card = ModelCard.model_validate(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise StoreError(f"{entry.name}: {path.name} is missing") from exc
    except json.JSONDecodeError as exc:
        raise StoreError(f"{entry.name}: {path.name} is not valid JSON") from exc
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) or "card" for e in exc.errors())
        raise StoreError(f"{entry.name}: {path.name} breaks the schema at {fields}") from exc
    if path.name != card_file(card.name, card.version) or card.name != entry.name:
        raise StoreError(f"{entry.name}: {path.name} says it is {card.name} v{card.version}")
    for file_name in card.files:
        if not _inside(file_name):
            raise StoreError(f"{entry.name}: file {file_name!r} is not a path inside the store")
    for role, graph in card.graphs.items():
        if graph.file not in card.files:
            raise StoreError(f"{entry.name}: graph {role!r} file {graph.file} is not in 'files'")
    return card


def _inside(file_name: str) -> bool:
    path = PurePosixPath(file_name)
    return not path.is_absolute() and ".." not in path.parts and "\\" not in file_name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(folder: Path, card: ModelCard) -> None:
    """Raise ChecksumMismatch unless every file listed in the card is present and matches."""
    for file_name, expected in card.files.items():
        path = folder / file_name
        if not path.is_file():
            raise ChecksumMismatch(f"{card.name}: {file_name} is missing")
        actual = sha256_of(path)
        if actual != expected.sha256.lower():
            raise ChecksumMismatch(
                f"{card.name}: sha256 mismatch for {file_name} "
                f"(card {expected.sha256[:12]}…, file {actual[:12]}…)"
            )

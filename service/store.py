"""Reading ``model_store/``: folder layout, the model card, and the sha256 check."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import ChecksumMismatch, StoreError

CARD_FILE = "model.json"


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


class FileEntry(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    bytes: int = Field(ge=0)


class ModelCard(BaseModel):
    """``model.json`` as specified in docs/model-store.md; unknown keys are kept, not refused."""

    model_config = ConfigDict(extra="allow")

    schema_version: Literal[1]
    name: str
    version: int = Field(ge=1)
    family: str
    dataset: str | None = None
    image_shape: tuple[int, int, int]
    latent_dim: int | None = Field(default=None, ge=1)
    class_names: list[str] | None = None
    likelihood: Likelihood | None = None
    graphs: dict[str, GraphSpec]
    metrics: dict[str, float | None] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry]


@dataclass(frozen=True)
class StoreEntry:
    """One model folder: its name and the folder of its highest version (None if it has none)."""

    name: str
    version_dir: Path | None


def discover(root: Path) -> list[StoreEntry]:
    entries = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        newest = max(versions, key=lambda p: int(p.name), default=None)
        entries.append(StoreEntry(model_dir.name, newest))
    return entries


def read_card(entry: StoreEntry) -> ModelCard:
    if entry.version_dir is None:
        raise StoreError(f"{entry.name}: no version folder (a positive integer) found")
    path = entry.version_dir / CARD_FILE
    try:
        card = ModelCard.model_validate(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise StoreError(f"{entry.name}: {CARD_FILE} is missing") from exc
    except json.JSONDecodeError as exc:
        raise StoreError(f"{entry.name}: {CARD_FILE} is not valid JSON") from exc
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) or "card" for e in exc.errors())
        raise StoreError(f"{entry.name}: {CARD_FILE} breaks the schema at {fields}") from exc
    if card.name != entry.name or card.version != int(entry.version_dir.name):
        raise StoreError(
            f"{entry.name}: card says {card.name} v{card.version}, "
            f"folder is {entry.name}/{entry.version_dir.name}"
        )
    for role, graph in card.graphs.items():
        if graph.file not in card.files:
            raise StoreError(f"{entry.name}: graph {role!r} file {graph.file} is not in 'files'")
    return card


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(version_dir: Path, card: ModelCard) -> None:
    """Raise ChecksumMismatch unless every file listed in the card is present and matches."""
    for file_name, expected in card.files.items():
        path = version_dir / file_name
        if not path.is_file():
            raise ChecksumMismatch(f"{card.name}: {file_name} is missing")
        actual = sha256_of(path)
        if actual != expected.sha256.lower():
            raise ChecksumMismatch(
                f"{card.name}: sha256 mismatch for {file_name} "
                f"(card {expected.sha256[:12]}…, file {actual[:12]}…)"
            )

"""Which models a store holds, and reading their cards."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from modelstore.card import ModelCard
from modelstore.errors import StoreError
from modelstore.layout import CARD_FILE, MODEL_NAME, OLD_CARD_FILE, card_file, inside_store


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

    @property
    def version(self) -> int | None:
        """The version the card's file name gives."""
        match = CARD_FILE.fullmatch(self.card_path.name) if self.card_path else None
        return int(match["version"]) if match else None


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
            f"`python -m modelstore.migrate {root}` (docs/model-store.md)",
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
        if not inside_store(file_name):
            raise StoreError(f"{entry.name}: file {file_name!r} is not a path inside the store")
    for role, graph in card.graphs.items():
        if graph.file not in card.files:
            raise StoreError(f"{entry.name}: graph {role!r} file {graph.file} is not in 'files'")
    return card

"""Move a store from the old layout, ``<name>/<version>/{model.json, <role>.onnx}``, to the Triton
layout of docs/model-store.md. Every file keeps its bytes, so every sha256 stays true.

It can be re-run at any time, including after an interrupted run: it migrates whatever is still
in the old layout and leaves the rest alone.

    python -m modelstore.migrate [model_store]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from modelstore.checksums import sha256_of
from modelstore.discovery import old_layout_models
from modelstore.errors import MigrationError
from modelstore.layout import OLD_CARD_FILE, SCHEMA_VERSION, card_file, graph_file, write_atomically
from modelstore.triton import write_configs


def migrate(store: Path) -> list[str]:
    """Migrate every model folder in the old layout; return ``<name> v<version>`` per version."""
    migrated = []
    for name in old_layout_models(store):
        folder = store / name
        versions = [
            p for p in folder.iterdir() if p.name.isdigit() and (p / OLD_CARD_FILE).is_file()
        ]
        for version_dir in sorted(versions, key=lambda p: int(p.name)):
            _migrate_version(store, name, version_dir)
            migrated.append(f"{name} v{version_dir.name}")
        write_configs(store, _newest_card(store, name))
        _remove_empty(folder)
    return migrated


def _migrate_version(store: Path, name: str, version_dir: Path) -> None:
    card = json.loads((version_dir / OLD_CARD_FILE).read_text())
    version = int(version_dir.name)
    if (
        card.get("schema_version") != 1
        or card.get("name") != name
        or card.get("version") != version
    ):
        raise MigrationError(
            f"{version_dir / OLD_CARD_FILE} is not a schema 1 card of {name} v{version}"
        )
    moves = {
        graph["file"]: graph_file(name, role, version) for role, graph in card["graphs"].items()
    }
    strays = sorted(set(card["files"]) - set(moves))
    if strays:
        raise MigrationError(f"{version_dir}: {strays} belong to no graph; move them by hand")
    for old, new in moves.items():
        _move(version_dir / old, store / new, card["files"][old]["sha256"])
    migrated = {
        **card,
        "schema_version": SCHEMA_VERSION,
        "graphs": {role: {**g, "file": moves[g["file"]]} for role, g in card["graphs"].items()},
        "files": {moves[old]: entry for old, entry in sorted(card["files"].items())},
    }
    target = store / card_file(name, version)
    if target.exists() and json.loads(target.read_text()) != migrated:
        raise MigrationError(f"{target} exists and differs from {version_dir / OLD_CARD_FILE}")
    write_atomically(target, (json.dumps(migrated, indent=2) + "\n").encode())
    (version_dir / OLD_CARD_FILE).unlink()
    _remove_empty(version_dir)


def _move(source: Path, target: Path, sha256: str) -> None:
    """Move one graph, checking its bytes; a target already in place (an earlier run that was
    interrupted) is accepted when its sha256 is the card's."""
    if target.exists():
        if sha256_of(target) != sha256:
            raise MigrationError(f"{target} exists and is not {source}")
        source.unlink(missing_ok=True)
        return
    if not source.is_file():
        raise MigrationError(f"{source} is missing")
    if sha256_of(source) != sha256:
        raise MigrationError(f"{source} does not match the sha256 in its card")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


def _newest_card(store: Path, name: str) -> dict[str, Any]:
    cards = [json.loads(p.read_text()) for p in store.glob(f"{name}.v*.json")]
    return max((c for c in cards if c.get("name") == name), key=lambda c: int(c["version"]))


def _remove_empty(folder: Path) -> None:
    """Remove a folder the migration emptied; anything left in it stops the run, because Triton
    would take the folder for a model and fail to load it."""
    left = sorted(p.name for p in folder.iterdir())
    if left:
        raise MigrationError(f"{folder} still holds {left} after the move; remove them by hand")
    folder.rmdir()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    store = Path(args[0] if args else "model_store")
    try:
        migrated = migrate(store)
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in migrated:
        print(f"migrated {line}")
    print(f"{store}: {len(migrated)} version(s) migrated; the store is in the Triton layout")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The sha256 of every file a card lists, and the check that the files are still those."""

from __future__ import annotations

import hashlib
from pathlib import Path

from modelstore.card import ModelCard
from modelstore.errors import ChecksumMismatch


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

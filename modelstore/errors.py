"""What can be wrong with a store: a model folder or card that does not follow
docs/model-store.md."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of the store's errors; ``message`` says which model and what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ChecksumMismatch(StoreError):
    """A file is missing, or its bytes are not the ones its card's sha256 names."""


class MigrationError(StoreError):
    """An old-layout store is not what its cards say; nothing past the problem was moved."""

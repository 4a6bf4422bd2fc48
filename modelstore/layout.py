"""Names and places in the store: a Triton model repository with one card per model version.

One Triton model per graph, ``<name>.<role>/<version>/model.onnx`` beside its
``config.pbtxt``, and one card per model version, ``<name>.v<version>.json``, as a file at the
top (Triton loads folders only).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path, PurePosixPath

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


def inside_store(file_name: str) -> bool:
    """A relative path that cannot leave the store's root."""
    path = PurePosixPath(file_name)
    return not path.is_absolute() and ".." not in path.parts and "\\" not in file_name


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of it; the new one keeps the old
    one's permissions (a new file: 0644, where mkstemp alone would give 0600 and hide it from a
    server running as another user)."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

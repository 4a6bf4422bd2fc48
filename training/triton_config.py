"""Triton's ``config.pbtxt`` for one graph of a card, and the Triton layout of the store.

No torch here: the store migration and the tests' tiny store write configs too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from service.store import TRITON_CONFIG, graph_model

MAX_BATCH_SIZE = 64
"""The service's default SERVICE_BATCH_MAX_SIZE, so that both servers batch alike."""
TRITON_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
}


def config_pbtxt(name: str, role: str, graph: Mapping[str, Any], source: str) -> str:
    """Triton's model configuration for ``graph`` (a card's ``graphs[role]``).

    When every input and output has a dynamic first axis, Triton batches: ``max_batch_size``
    is set and ``dims`` leave the batch axis out. Otherwise the graph is described whole.
    """
    tensors = [*graph["inputs"], *graph["outputs"]]
    batched = all(t["shape"] and t["shape"][0] == -1 for t in tensors)
    lines = [
        f"# Written from {source} by genserve; Triton reads it, genserve does not.",
        f'name: "{graph_model(name, role)}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {MAX_BATCH_SIZE if batched else 0}",
        "version_policy: { latest: { num_versions: 1 } }",
        *_tensors("input", graph["inputs"], batched),
        *_tensors("output", graph["outputs"], batched),
    ]
    if batched:
        lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n"


def _tensors(kind: str, tensors: Sequence[Mapping[str, Any]], batched: bool) -> list[str]:
    entries = []
    for tensor in tensors:
        dims = list(tensor["shape"][1:] if batched else tensor["shape"])
        fields = [
            f'name: "{tensor["name"]}"',
            f"data_type: {TRITON_TYPES[tensor['dtype']]}",
            # Triton writes a per-row scalar as dims [1], reshaped to the graph's [] per row.
            f"dims: {dims or [1]}",
            *(["reshape: { shape: [ ] }"] if not dims else []),
        ]
        entries.append("  {\n" + "".join(f"    {f}\n" for f in fields) + "  }")
    return [f"{kind} [\n" + ",\n".join(entries) + "\n]"]


def write_configs(store: Path, card: Mapping[str, Any]) -> list[Path]:
    """Write ``<name>.<role>/config.pbtxt`` for every graph of ``card`` (the newest version's:
    Triton serves the newest version of each graph model, and one config covers them all)."""
    source = f"{card['name']}.v{card['version']}.json"
    written = []
    for role, graph in card["graphs"].items():
        path = store / graph_model(card["name"], role) / TRITON_CONFIG
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, config_pbtxt(card["name"], role, graph, source).encode())
        written.append(path)
    return written


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of it."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

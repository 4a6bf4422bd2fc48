"""Changing a copy of a store as an export, or an accident, would: a new version of a model,
or one of its files broken in a known way."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modelstore.discovery import discover
from modelstore.layout import card_file, graph_file


def copy_store(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def newest_card(store: Path, name: str) -> Path:
    entries = {entry.name: entry for entry in discover(store)}
    path = entries[name].card_path
    if path is None:
        raise RuntimeError(f"{name}: {entries[name].problem}")
    return path


def publish_next_version(store: Path, name: str) -> int:
    """Copy the newest version of ``name`` as the next one, graphs first and the card last,
    as an export would: a watcher never sees a card before its files."""
    card = json.loads(newest_card(store, name).read_text())
    version = card["version"] + 1
    for role, graph in card["graphs"].items():
        target = graph_file(name, role, version)
        (store / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store / graph["file"], store / target)
        card["files"][target] = card["files"].pop(graph["file"])
        graph["file"] = target
    card["version"] = version
    (store / card_file(name, version)).write_text(json.dumps(card, indent=2))
    return version


def _rewrite_graph(store: Path, name: str, damage: Callable[[bytes], bytes], sign: bool) -> str:
    """Damage the first graph of ``name``; ``sign``: record the damaged file's sha256 in the
    card, so that it passes the checksum and reaches onnxruntime."""
    card_path = newest_card(store, name)
    card = json.loads(card_path.read_text())
    file = next(iter(card["graphs"].values()))["file"]
    data = damage((store / file).read_bytes())
    (store / file).write_bytes(data)
    if sign:
        card["files"][file] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        card_path.write_text(json.dumps(card, indent=2))
    return file


def _rewrite_card(store: Path, name: str, text: bytes) -> None:
    newest_card(store, name).write_bytes(text)


def _card_without_graphs(store: Path, name: str) -> bytes:
    card = json.loads(newest_card(store, name).read_text())
    del card["graphs"]
    return json.dumps(card).encode()


CORRUPTIONS: dict[str, Callable[[Path, str], object]] = {
    "truncated graph": lambda s, n: _rewrite_graph(s, n, lambda b: b[: len(b) // 2], sign=True),
    "garbage graph": lambda s, n: _rewrite_graph(
        s, n, lambda b: np.random.default_rng(0).bytes(len(b)), sign=True
    ),
    "checksum mismatch": lambda s, n: _rewrite_graph(
        s, n, lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), sign=False
    ),
    "card not JSON": lambda s, n: _rewrite_card(s, n, b'{"name": '),
    "card not UTF-8": lambda s, n: _rewrite_card(s, n, b"\xff\xfe\x00garbage"),
    "card breaks the schema": lambda s, n: _rewrite_card(s, n, _card_without_graphs(s, n)),
}

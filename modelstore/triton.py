"""Triton's ``config.pbtxt`` for one graph of a card: the writer, and a reader of the fields that
the service and Triton must agree on (a config tuned by hand may hold more; those are kept).

When every input and output has a dynamic first axis, Triton batches: ``max_batch_size`` is
set and ``dims`` leave the batch axis out. Otherwise the graph is described whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelstore.errors import StoreError
from modelstore.layout import TRITON_CONFIG, card_file, graph_model, write_atomically

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
    """Triton's model configuration for ``graph`` (a card's ``graphs[role]``)."""
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
    source = card_file(card["name"], card["version"])
    written = []
    for role, graph in card["graphs"].items():
        path = store / graph_model(card["name"], role) / TRITON_CONFIG
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, config_pbtxt(card["name"], role, graph, source).encode())
        written.append(path)
    return written


@dataclass(frozen=True)
class TritonTensor:
    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class TritonConfig:
    """What a ``config.pbtxt`` says of a graph: its name, platform, batching and tensors."""

    name: str
    platform: str
    max_batch_size: int
    inputs: tuple[TritonTensor, ...]
    outputs: tuple[TritonTensor, ...]

    @classmethod
    def of_graph(cls, name: str, role: str, graph: Mapping[str, Any]) -> TritonConfig:
        """The config the writer gives ``graph``."""
        return parse_config(config_pbtxt(name, role, graph, "the card"))

    def describes(self, other: TritonConfig) -> bool:
        """The same graph, batched alike (a tuned batch size or instance count aside)."""
        return (
            (self.name, self.platform, self.inputs, self.outputs)
            == (other.name, other.platform, other.inputs, other.outputs)
            and (self.max_batch_size > 0) == (other.max_batch_size > 0)
        )  # fmt: skip


def read_config(path: Path) -> TritonConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise StoreError(f"{path}: cannot be read ({type(exc).__name__})") from exc
    try:
        return parse_config(text)
    except ValueError as exc:
        raise StoreError(f"{path}: {exc}") from exc


_TOKEN = re.compile(r'\s*(?:#[^\n]*\n?|("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([^\s{}\[\]:,"#]+))')


def parse_config(text: str) -> TritonConfig:
    """The protobuf text format, as far as Triton's model configuration needs: scalars,
    nested messages and lists. ValueError says where it is malformed."""
    message = _Parser(text).message(top=True)
    return TritonConfig(
        name=str(message.get("name", "")),
        platform=str(message.get("platform", "")),
        max_batch_size=int(message.get("max_batch_size", 0)),
        inputs=tuple(_tensor(t) for t in _as_list(message.get("input", []))),
        outputs=tuple(_tensor(t) for t in _as_list(message.get("output", []))),
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _tensor(fields: Any) -> TritonTensor:
    if not isinstance(fields, dict):
        raise ValueError(f"a tensor must be a message, got {fields!r}")
    dims = tuple(int(d) for d in _as_list(fields.get("dims", [])))
    return TritonTensor(str(fields.get("name", "")), str(fields.get("data_type", "")), dims)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                if text[position:].strip():
                    raise ValueError(f"cannot read {text[position : position + 20]!r}")
                break
            position = match.end()
            token = match.group(1) or match.group(2) or match.group(3)
            if token:
                self.tokens.append(token)
        self.at = 0

    def next(self) -> str:
        if self.at >= len(self.tokens):
            raise ValueError("the text ends too soon")
        self.at += 1
        return self.tokens[self.at - 1]

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def message(self, top: bool = False) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        while (token := self.peek()) is not None and token != "}":
            name = self.next()
            if self.peek() == ":":
                self.next()
            value = self.value()
            if name in fields:  # a repeated field written once per element
                fields[name] = [*_as_list(fields[name]), *_as_list(value)]
            else:
                fields[name] = value
            if self.peek() == ",":
                self.next()
        if top and self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()!r}")
        return fields

    def value(self) -> Any:
        token = self.next()
        if token == "{":
            fields = self.message()
            self._expect("}")
            return fields
        if token == "[":
            items = []
            while self.peek() != "]":
                items.append(self.value())
                if self.peek() == ",":
                    self.next()
            self._expect("]")
            return items
        if token.startswith('"'):
            return token[1:-1].encode().decode("unicode_escape")
        try:
            return int(token)
        except ValueError:
            return token

    def _expect(self, token: str) -> None:
        if self.next() != token:
            raise ValueError(f"expected {token!r}")

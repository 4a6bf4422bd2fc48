"""Turn a CustomResourceDefinition into the JSON schema vendored here (deploy/schemas/README.md).

    python deploy/schemas/vendor_crd.py CRD.yaml --source URL > deploy/schemas/NAME.json

The output is the openAPIV3Schema of the CRD's one served version, unchanged except that every
subschema that occurs more than once and is at least MIN_SHARED_BYTES long (canonical JSON) is
stored once under `definitions` and referenced by `$ref` (a Kubernetes CRD repeats the whole
Container, Affinity, Volume ... schema at every place it is used). `inline` undoes that exactly;
`x-source` records the CRD file's sha256 and the sha256 of the canonical openAPIV3Schema, so
anyone can check the vendored file against upstream. Same input, same bytes out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

MIN_SHARED_BYTES = 200
ADDED_KEYS = ("$comment", "x-kubernetes-group-version-kind", "x-source", "definitions")
COMBINERS = ("allOf", "anyOf", "oneOf")

Schema = dict[str, Any]


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def render(schema: Schema) -> str:
    """The vendored file's text."""
    return json.dumps(schema, indent=1, sort_keys=True) + "\n"


def _subschemas(schema: Schema) -> Iterator[tuple[str, Any, Any, Schema]]:
    """(name suffix, container, key, child) for every schema directly below ``schema``, in a
    fixed order; ``container[key]`` is the child. Values such as ``default`` are not schemas."""
    for name, child in sorted(schema.get("properties", {}).items()):
        yield f".{name}", schema["properties"], name, child
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            yield f"-{key}", schema, key, schema[key]
    for key in COMBINERS:
        for i, child in enumerate(schema.get(key, [])):
            yield f"-{key}{i}", schema[key], i, child


def deduplicate(root: Schema, min_bytes: int = MIN_SHARED_BYTES) -> tuple[Schema, Schema]:
    """(root with repeated subschemas replaced by $ref, the definitions they point to).
    A definition is named after the shortest path where its subschema occurs."""
    counts: dict[str, int] = {}
    name_of: dict[str, str] = {}

    def survey(schema: Schema, path: str) -> None:
        for suffix, _, _, child in _subschemas(schema):
            text, here = canonical(child), (path + suffix).lstrip(".")
            counts[text] = counts.get(text, 0) + 1
            named = name_of.setdefault(text, here)
            name_of[text] = min(named, here, key=lambda p: (len(p), p))
            if counts[text] == 1:  # a copy's insides are counted once, with the first
                survey(child, path + suffix)

    survey(root, "")
    shared = {text for text, n in counts.items() if n > 1 and len(text) >= min_bytes}
    definitions: Schema = {}

    def rewrite(schema: Schema) -> Schema:
        out = json.loads(canonical(schema))
        for _, container, key, child in _subschemas(out):
            text = canonical(child)
            if text in shared:
                name = name_of[text]
                if name not in definitions:
                    definitions[name] = rewrite(child)
                container[key] = {"$ref": f"#/definitions/{name}"}
            else:
                container[key] = rewrite(child)
        return out

    return rewrite(root), definitions


def inline(vendored: Schema) -> Schema:
    """The openAPIV3Schema a vendored file was made from: every $ref replaced by its definition,
    the keys this script adds dropped."""
    definitions = vendored.get("definitions", {})

    def expand(schema: Schema) -> Schema:
        if set(schema) == {"$ref"}:
            return expand(definitions[schema["$ref"].removeprefix("#/definitions/")])
        out = dict(schema)
        if "properties" in out:
            out["properties"] = {name: expand(child) for name, child in out["properties"].items()}
        for key in ("items", "additionalProperties", "not"):
            if isinstance(out.get(key), dict):
                out[key] = expand(out[key])
        for key in COMBINERS:
            if key in out:
                out[key] = [expand(child) for child in out[key]]
        return out

    return expand({k: v for k, v in vendored.items() if k not in ADDED_KEYS})


def derive(crd: Schema, source: str, file_sha256: str) -> Schema:
    """The vendored schema of ``crd``'s only served version."""
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served", True)]
    schema: Schema = version["schema"]["openAPIV3Schema"]
    assert not set(ADDED_KEYS) & set(schema), "the CRD schema already uses a key this adds"
    root, definitions = deduplicate(schema)
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    out: Schema = {
        "$comment": f"openAPIV3Schema of {group}/{version['name']} {kind}, from x-source.url; "
        "repeated subschemas moved to definitions by deploy/schemas/vendor_crd.py",
        "x-kubernetes-group-version-kind": [
            {"group": group, "kind": kind, "version": version["name"]}
        ],
        "x-source": {
            "url": source,
            "sha256": file_sha256,
            "openAPIV3Schema-sha256": sha256(canonical(schema)),
        },
        **root,
    }
    if definitions:
        out["definitions"] = definitions
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("crd", type=Path, help="the CRD's YAML file, as downloaded")
    parser.add_argument("--source", required=True, help="where the file was downloaded from")
    args = parser.parse_args(argv)
    raw = args.crd.read_bytes()
    sys.stdout.write(render(derive(yaml.safe_load(raw), args.source, sha256(raw))))


if __name__ == "__main__":
    main()

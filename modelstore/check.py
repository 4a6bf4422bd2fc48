"""Check a whole store as both servers will read it: every card against the schema, every file
against its sha256, and every graph's ``config.pbtxt`` against the newest card, so that Triton
serves the graphs genserve does.

    python -m modelstore.check [model_store]
"""

from __future__ import annotations

import sys
from pathlib import Path

from modelstore.checksums import verify_files
from modelstore.discovery import discover, read_card
from modelstore.errors import StoreError
from modelstore.layout import TRITON_CONFIG, graph_model
from modelstore.triton import TritonConfig, read_config


def check_store(root: Path) -> dict[str, list[str]]:
    """Each model's problems, by name (an empty list: none)."""
    report: dict[str, list[str]] = {}
    for entry in discover(root):
        problems: list[str] = []
        try:
            card = read_card(entry)
            verify_files(entry.folder, card)
        except StoreError as exc:
            report[entry.name] = [exc.message]
            continue
        for role, graph in card.graphs.items():
            path = root / graph_model(card.name, role) / TRITON_CONFIG
            try:
                found = read_config(path)
            except StoreError as exc:
                problems.append(exc.message)
                continue
            expected = TritonConfig.of_graph(card.name, role, graph.model_dump())
            if not found.describes(expected):
                problems.append(
                    f"{path.relative_to(root)} does not describe graph {role!r} of "
                    f"{card.name} v{card.version}; re-export it, or write it again with "
                    "modelstore.triton.write_configs"
                )
        report[entry.name] = problems
    return report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0] if args else "model_store")
    if not root.is_dir():
        print(f"error: {root} is not a folder", file=sys.stderr)
        return 2
    report = check_store(root)
    for name, problems in report.items():
        print(f"{name}: " + ("ok" if not problems else "; ".join(problems)))
    bad = sum(bool(problems) for problems in report.values())
    print(f"{root}: {len(report)} model(s), {bad} with problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

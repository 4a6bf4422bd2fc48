"""The arguments every bench script that loads the model store starts with."""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def store_parser(description: str, model: str) -> argparse.ArgumentParser:
    """``--store`` (default: the bundled model_store/) and ``--model`` (default ``model``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--store", type=Path, default=REPO / "model_store")
    parser.add_argument("--model", default=model)
    return parser

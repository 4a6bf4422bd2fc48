"""Print the service's runtime requirements, read from pyproject.toml, for one image flavour.

``python requirements.py pyproject.toml cpu`` (or ``cuda``) prints one requirement a line. The
image installs these instead of the project itself, so it holds no torch (the ``train`` extra is
never read) and needs no README or build backend. pyproject.toml pins onnxruntime-gpu on x86_64;
the CPU image swaps it for the plain ``onnxruntime`` wheel of the same version (about 300 MB
smaller, same ``onnxruntime`` module), and the CUDA image keeps ``onnxruntime-gpu``.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

FLAVOURS = {"cpu": "onnxruntime", "cuda": "onnxruntime-gpu"}


def requirements(pyproject: Path, flavour: str) -> list[str]:
    dependencies: list[str] = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pinned = [d for d in dependencies if re.match(r"onnxruntime-gpu\s*==", d)]
    if len(pinned) != 1:
        raise SystemExit(
            "pyproject.toml must pin onnxruntime-gpu exactly once (onnxruntime-gpu==X)"
        )
    version = pinned[0].split(";")[0].split("==")[1].strip()
    kept = [d for d in dependencies if not re.match(r"onnxruntime(-gpu)?\b", d)]
    return [*kept, f"{FLAVOURS[flavour]}=={version}"]


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in FLAVOURS:
        raise SystemExit(f"usage: requirements.py PYPROJECT {{{','.join(FLAVOURS)}}}")
    print("\n".join(requirements(Path(argv[0]), argv[1])))


if __name__ == "__main__":
    main(sys.argv[1:])

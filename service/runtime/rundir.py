"""The folder the worker processes of one service share: Prometheus' multiprocess files, each
worker's published state, the admin's model changes for every worker, and the locks of the
autoregressive slots. ``python -m service`` creates it empty before it starts the workers and
names it in their environment; a single-process service has none."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_DIR_ENV = "GENSERVE_RUN_DIR"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's multiprocess mode reads it when it is first imported."""


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def workers(self) -> Path:
        return self.root / "workers"

    @property
    def slots(self) -> Path:
        return self.root / "slots"

    @property
    def control(self) -> Path:
        return self.root / "control"

    @classmethod
    def create(cls, root: Path | None = None) -> RunDir:
        """A new, empty run folder (``root`` wiped first, if it is given and exists)."""
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="genserve-run-"))
        elif root.exists():
            shutil.rmtree(root)
        run = cls(root)
        for folder in (run.root, run.metrics, run.workers, run.slots, run.control):
            folder.mkdir(parents=True, exist_ok=True)
        return run

    @classmethod
    def from_environment(cls) -> RunDir | None:
        root = os.environ.get(RUN_DIR_ENV)
        return cls(Path(root)) if root else None

    def environment(self) -> dict[str, str]:
        """What the workers' environment needs to find this folder."""
        return {RUN_DIR_ENV: str(self.root), METRICS_ENV: str(self.metrics)}


def write_json(path: Path, data: Any) -> None:
    """Readers see the old file or the new one, never half of it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    """The file's JSON, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

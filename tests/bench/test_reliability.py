"""``bench/reliability.py --quick``, run as a command: every figure, on the shipped store,
without a problem."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.live_server import REPO
from harness.reliability import FIGURES, problems_of

pytestmark = pytest.mark.slow


def test_quick_mode_runs_every_figure_on_the_shipped_store_without_a_problem(
    shipped_or_tiny_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "figures.json"
    command = [sys.executable, str(REPO / "bench" / "reliability.py"), "--quick"]
    command += ["--store", str(shipped_or_tiny_store), "--json", str(out)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert out.is_file(), result.stdout[-2000:] + result.stderr[-2000:]
    results = json.loads(out.read_text())
    assert list(results) == FIGURES
    assert problems_of(results) == []  # schemathesis-key too: the API keys fuzzed
    assert all(f["requests"] > 0 for name in ("soak", "overload", "reload") for f in results[name])
    # Each figure exercised every model the store serves (7 in the shipped store).
    (soak,) = results["soak"]
    (corrupt,) = results["corrupt"]
    assert corrupt["others"] == soak["models"] - 1 and corrupt["others_serve"]
    assert time.perf_counter() - started < 300  # about 90 s on two busy cores
    assert result.returncode == 0, result.stderr[-2000:]

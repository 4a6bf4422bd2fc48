"""``bench/reliability.py --quick``: every figure, on the shipped store, without a problem."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench import reliability

pytestmark = pytest.mark.slow


def test_quick_mode_runs_every_figure_on_the_shipped_store_without_a_problem(
    shipped_or_tiny_store: Path,
) -> None:
    started = time.perf_counter()
    results = reliability.main(["--quick", "--store", str(shipped_or_tiny_store)])
    assert list(results) == reliability.FIGURES
    assert reliability.problems_of(results) == []  # schemathesis-key too: the API keys fuzzed
    assert all(f["requests"] > 0 for name in ("soak", "overload", "reload") for f in results[name])
    # Each figure exercised every model the store serves (7 in the shipped store).
    (soak,) = results["soak"]
    (corrupt,) = results["corrupt"]
    assert corrupt["others"] == soak["models"] - 1 and corrupt["others_serve"]
    assert time.perf_counter() - started < 300  # about 90 s on two busy cores

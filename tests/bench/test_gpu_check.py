"""``bench/profiling.py gpu-check``, the first GPU run, run as it runs where there is no GPU: on
the CPU fallback, with tiny counts, as a command. It must start the service, find every graph on
the device's provider, measure each point without an error and write its report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.devices import PROVIDERS, gpu_name
from harness.live_server import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_gpu_check_runs_on_the_cpu_fallback_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    args = ["--models", "dcgan-fashion", "--images", "1,4", "--concurrency", "1,4"]
    args += ["--requests", "8", "--seconds", "0.1", "--out", str(out)]
    command = [sys.executable, str(REPO / "bench" / "profiling.py"), "gpu-check", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=280)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    text = out.read_text()
    device = "cuda" if gpu_name() else "cpu"
    assert f"- device: **{device}**" in text
    providers = re.findall(r"^\| [\w-]+ \| \w+ \| (\w+) \|$", text, re.M)
    assert providers[0] == "provider"  # the header
    assert len(providers) > 2 and set(providers[1:]) == {PROVIDERS[device]}
    rows = re.findall(r"^\| dcgan-fashion \| (\d+) \| (\d+) \| \d+ \| 0 \| [\d,]+ \|", text, re.M)
    assert sorted(rows) == [("1", "1"), ("1", "4"), ("4", "1"), ("4", "4")]

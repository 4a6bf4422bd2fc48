"""The device the service runs on here: the GPU ``nvidia-smi`` lists, if any, and the execution
provider each device's graphs run on."""

from __future__ import annotations

import subprocess

PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def gpu_name() -> str | None:
    """The first GPU ``nvidia-smi -L`` lists, or None (no driver, no GPU)."""
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in listed.stdout.splitlines() if line.startswith("GPU ")]
    return lines[0] if listed.returncode == 0 and lines else None

"""What the CPU offers training: its name, its cores and whether it has bf16 instructions."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""cpuinfo flags of the instructions that make bf16 autocast pay on a CPU (Intel AMX, AVX512-BF16);
without them torch emulates bf16 and it is slower than fp32."""


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def bf16_instructions() -> list[str]:
    """The bf16 instruction sets this CPU has (empty when it has none)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [flag for flag in BF16_FLAGS if flag in flags]
    return []


def auto_precision() -> str:
    """bf16 where the CPU has bf16 instructions, fp32 elsewhere."""
    return "bf16" if bf16_instructions() else "fp32"


def cpu_description() -> str:
    bf16 = ", ".join(bf16_instructions()) or "no bf16 instructions"
    return (
        f"{cpu_name()}, {os.cpu_count()} cores ({bf16}), {torch.get_num_threads()} torch "
        "threads, no GPU"
    )

"""glibc malloc tuning, so that memory freed by a replaced model goes back to the OS.

onnxruntime sessions are built in worker threads, and glibc gives each thread an arena of its
own (up to 8 per core) that keeps freed memory: every hot reload left some behind. Two arenas,
and a trim after a model is freed, keep the resident size flat (bench/reliability.py reload).
Elsewhere than glibc both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8
"""mallopt's parameter number for the arena limit (malloc.h)."""
ARENAS = 2


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def limit_malloc_arenas(arenas: int = ARENAS) -> None:
    """Call before any thread starts: arenas that already exist stay."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, arenas)


def return_free_memory() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)

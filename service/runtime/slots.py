"""The slots that bound how many autoregressive samplings run at once in the whole service
(SERVICE_MAX_CONCURRENT_AUTOREGRESSIVE): in one process a capacity limiter; across worker
processes, one lock file per slot in the run folder, which the kernel frees with the process
that held it, whatever becomes of it."""

from __future__ import annotations

import asyncio
import fcntl
import math
import os
import time
from pathlib import Path
from typing import Protocol

import anyio

POLL_S = 0.005
"""How often a sampling waiting for a slot held by another process looks again."""


class Slots(Protocol):
    @property
    def waiting(self) -> int:
        """Samplings of this process waiting for a slot."""

    async def acquire(self, timeout: float) -> bool:
        """Take a slot, waiting at most ``timeout`` s (inf: no limit); False if none came."""

    def release(self) -> None: ...


class LocalSlots:
    """For one process."""

    def __init__(self, slots: int) -> None:
        self.limiter = anyio.CapacityLimiter(slots)

    @property
    def waiting(self) -> int:
        return self.limiter.statistics().tasks_waiting

    async def acquire(self, timeout: float) -> bool:
        with anyio.move_on_after(timeout) as wait:
            await self.limiter.acquire()
        return not wait.cancelled_caught

    def release(self) -> None:
        self.limiter.release()


class FileSlots:
    """For the worker processes sharing ``folder``: slot i is an exclusive lock on
    ``folder/slot-<i>``. A process's own samplings queue in it first, so they take the slots
    in their order, and only one of them at a time polls the lock files."""

    def __init__(self, folder: Path, slots: int) -> None:
        self.paths = [folder / f"slot-{i}" for i in range(slots)]
        for path in self.paths:
            path.touch(exist_ok=True)
        self.held: list[int] = []
        self.turn = asyncio.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    async def acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout if math.isfinite(timeout) else math.inf
        self._waiting += 1
        try:
            with anyio.move_on_after(timeout):
                async with self.turn:
                    while (fd := self._try_lock()) is None:
                        if time.monotonic() >= deadline:
                            return False
                        await asyncio.sleep(POLL_S)
                    self.held.append(fd)
                    return True
            return False
        finally:
            self._waiting -= 1

    def _try_lock(self) -> int | None:
        for path in self.paths:
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None

    def release(self) -> None:
        fd = self.held.pop()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

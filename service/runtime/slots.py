"""The slots that bound how many autoregressive samplings run at once in the whole service
(SERVICE_MAX_CONCURRENT_AUTOREGRESSIVE): in one process a gate; across worker processes, one
lock file per slot in the run folder, which the kernel frees with the process that held it,
whatever becomes of it. Either way a freed slot goes to an interactive sampling before a bulk
one, bulk keeping a share of the turns (``ClassGate``), as the batchers serve their rows."""

from __future__ import annotations

import asyncio
import fcntl
import math
import os
import time
from collections import deque
from pathlib import Path
from typing import Protocol

import anyio

from service.runtime.batching import RequestClass

POLL_S = 0.005
"""How often a sampling waiting for a slot held by another process looks again."""


class Slots(Protocol):
    @property
    def waiting(self) -> int:
        """Samplings of this process waiting for a slot."""

    async def acquire(self, timeout: float, klass: RequestClass = RequestClass.INTERACTIVE) -> bool:
        """Take a slot, waiting at most ``timeout`` s (inf: no limit); False if none came. An
        interactive sampling is served before a bulk one."""

    def release(self) -> None: ...


class ClassGate:
    """``capacity`` holders at once. A freed place goes to the first interactive waiter, else
    the first bulk one; while both wait, bulk keeps ``bulk_share`` of the places given, so it
    is never starved."""

    def __init__(self, capacity: int, bulk_share: float = 0.25) -> None:
        self.free, self.bulk_share = capacity, bulk_share
        self.lanes: dict[RequestClass, deque[asyncio.Future[None]]] = {
            RequestClass.INTERACTIVE: deque(),
            RequestClass.BULK: deque(),
        }
        self.given = dict.fromkeys(RequestClass, 0)
        """Places given since the bulk lane was last empty."""

    @property
    def waiting(self) -> int:
        return sum(not f.done() for lane in self.lanes.values() for f in lane)

    async def acquire(self, timeout: float, klass: RequestClass) -> bool:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            self._given(klass)
            return True
        place = asyncio.get_running_loop().create_future()
        self.lanes[klass].append(place)
        try:
            async with asyncio.timeout(timeout if math.isfinite(timeout) else None):
                await place
            return True
        except BaseException as exc:
            if place.done() and not place.cancelled():  # given just as the wait ended
                self.release()
            else:
                place.cancel()
                self.lanes[klass].remove(place)
            if isinstance(exc, TimeoutError):
                return False
            raise

    def release(self) -> None:
        while (klass := self._next()) is not None:
            place = self.lanes[klass].popleft()
            if not place.done():
                place.set_result(None)
                self._given(klass)
                return
        self.free += 1

    def _next(self) -> RequestClass | None:
        interactive, bulk = self.lanes[RequestClass.INTERACTIVE], self.lanes[RequestClass.BULK]
        owed = self.given[RequestClass.BULK] < self.bulk_share * sum(self.given.values())
        if bulk and (owed or not interactive):
            return RequestClass.BULK
        return RequestClass.INTERACTIVE if interactive else None

    def _given(self, klass: RequestClass) -> None:
        self.given[klass] += 1
        if not self.lanes[RequestClass.BULK]:
            self.given = dict.fromkeys(self.given, 0)


class LocalSlots:
    """For one process."""

    def __init__(self, slots: int, bulk_share: float = 0.25) -> None:
        self.gate = ClassGate(slots, bulk_share)

    @property
    def waiting(self) -> int:
        return self.gate.waiting

    async def acquire(self, timeout: float, klass: RequestClass = RequestClass.INTERACTIVE) -> bool:
        return await self.gate.acquire(timeout, klass)

    def release(self) -> None:
        self.gate.release()


class FileSlots:
    """For the worker processes sharing ``folder``: slot i is an exclusive lock on
    ``folder/slot-<i>``. A process's own samplings queue in it first (its interactive ones
    first), and only one of them at a time polls the lock files."""

    def __init__(self, folder: Path, slots: int, bulk_share: float = 0.25) -> None:
        self.paths = [folder / f"slot-{i}" for i in range(slots)]
        for path in self.paths:
            path.touch(exist_ok=True)
        self.held: list[int] = []
        self.turn = ClassGate(1, bulk_share)
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    async def acquire(self, timeout: float, klass: RequestClass = RequestClass.INTERACTIVE) -> bool:
        deadline = time.monotonic() + timeout if math.isfinite(timeout) else math.inf
        self._waiting += 1
        try:
            with anyio.move_on_after(timeout):
                if not await self.turn.acquire(timeout, klass):
                    return False
                try:
                    while (fd := self._try_lock()) is None:
                        if time.monotonic() >= deadline:
                            return False
                        await asyncio.sleep(POLL_S)
                    self.held.append(fd)
                    return True
                finally:
                    self.turn.release()
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

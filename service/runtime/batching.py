"""Dynamic micro-batching: concurrent requests for one graph coalesce into one onnxruntime run.

A batch is dispatched as soon as the graph is free. While a run is under way, new requests
queue, and the next run takes all of them (up to ``max_batch`` rows), so batches grow with the
load and a lone request pays no delay. ``max_delay`` (Triton's ``max_queue_delay_microseconds``)
optionally holds a batch open a little longer for more rows to arrive. The queue is bounded:
when it is full a request is refused at once with ``Overloaded``, which carries a retry hint, and
so is a request that waited longer than ``queue_timeout`` for its turn.

Each request may bring a ``finish`` function, run on the request's slice of the outputs in the
graph's worker thread right after the run (e.g. PNG encoding), so the event loop only routes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from service.errors import Overloaded

Feeds = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]
Finish = Callable[[Outputs], Any]


class BatchObserver(Protocol):
    def register(self, model: str, graph: str) -> None: ...
    def batch_run(self, model: str, graph: str, rows: int, requests: int) -> None: ...
    def queue_wait(self, model: str, graph: str, seconds: float) -> None: ...
    def queue_depth(self, model: str, graph: str, depth: int) -> None: ...
    def rejected(self, model: str, graph: str) -> None: ...
    def discarded(self, model: str, graph: str, rows: int) -> None: ...


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int = 64
    """Most rows (images or latents) in one run; a single larger request still runs alone."""
    max_delay: float = 0.0
    """Seconds a batch may wait for more rows once the graph is free."""
    queue_limit: int = 256
    """Most requests waiting; one more is refused with Overloaded."""
    instances: int = 1
    """Batches of one graph that may run at once (Triton's instance count), each in its own
    thread: with one onnxruntime thread each, two instances keep two cores busy while the
    event loop serves HTTP in between."""
    queue_timeout: float = 0.0
    """Seconds a request may wait for its run; then it is refused with Overloaded. 0: no limit."""


@dataclass(eq=False)
class _Request:
    feeds: Feeds
    rows: int
    finish: Finish | None
    future: asyncio.Future[Any]
    queued_at: float = field(default_factory=time.perf_counter)
    expiry: asyncio.TimerHandle | None = None

    @property
    def signature(self) -> tuple[tuple[str, tuple[int, ...], str], ...]:
        """Requests batch together only if every input agrees beyond the batch axis."""
        return tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(self.feeds.items()))


class Batcher:
    """Batches the runs of one graph. Create it anywhere; it binds to the running event loop on
    the first ``submit``. ``run`` must accept and return arrays whose first axis is the batch."""

    def __init__(
        self,
        run: Callable[[Feeds], Outputs],
        policy: BatchPolicy,
        model: str = "",
        graph: str = "",
        observer: BatchObserver | None = None,
    ) -> None:
        self._run, self.policy = run, policy
        self.model, self.graph, self._observer = model, graph, observer
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        if observer:
            observer.register(model, graph)
        self._running: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(
            policy.instances, thread_name_prefix=f"ort-{model}-{graph}"
        )
        self._seconds_per_row = 0.001  # running estimate, for Retry-After
        self._closed = False
        self._retired = False

    @property
    def busy(self) -> bool:
        """Requests are queued or a batch is running."""
        return bool(self._queue or self._running)

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def submit(self, feeds: Feeds, finish: Finish | None = None) -> Any:
        """Queue one request and wait for its share of a batched run (after ``finish``)."""
        if self._closed:
            raise Overloaded(f"{self.model}: graph {self.graph!r} is shutting down", 1.0)
        if len(self._queue) >= self.policy.queue_limit:
            if self._observer:
                self._observer.rejected(self.model, self.graph)
            raise Overloaded(
                f"{self.model}: the {self.graph} queue is full ({self.policy.queue_limit} "
                "requests waiting); retry later",
                self.retry_after(),
            )
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._start(loop)
        rows = _rows(feeds)
        request = _Request(feeds, rows, finish, loop.create_future())
        self._queue.append(request)
        self._queued_rows += rows
        if self.policy.queue_timeout > 0:
            request.expiry = loop.call_later(self.policy.queue_timeout, self._expire, request)
        request.future.add_done_callback(lambda future: self._forget(request, future))
        assert self._arrived is not None
        self._arrived.set()
        return await request.future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind a worker to this event loop. Requests left queued by a worker that stopped are
        refused (where their loop still runs) rather than left waiting forever."""
        for request in self._queue:
            if request.expiry is not None:
                request.expiry.cancel()
            owner = request.future.get_loop()
            if not request.future.done() and not owner.is_closed():
                error = Overloaded(f"{self.model}: the {self.graph} worker restarted", 1.0)
                owner.call_soon_threadsafe(_refuse, request.future, error)
        self._queue.clear()
        self._queued_rows = 0
        self._arrived = asyncio.Event()
        name = f"batcher-{self.model}-{self.graph}"
        self._worker = loop.create_task(self._serve(), name=name)

    def retry_after(self) -> float:
        """Seconds until the queue as it is now has drained, at the recent speed."""
        return max(1.0, math.ceil(self._queued_rows * self._seconds_per_row))

    def _forget(self, request: _Request, future: asyncio.Future[Any]) -> None:
        """A request cancelled while queued leaves the queue at once (and the count)."""
        if not future.cancelled():
            return
        if request.expiry is not None:
            request.expiry.cancel()
        try:
            self._queue.remove(request)
        except ValueError:  # already taken into a batch
            return
        self._queued_rows -= request.rows

    def _expire(self, request: _Request) -> None:
        """A request still queued at its deadline is refused rather than run late."""
        try:
            self._queue.remove(request)
        except ValueError:  # already taken into a batch
            return
        self._queued_rows -= request.rows
        if request.future.done():  # the client went away
            return
        if self._observer:
            self._observer.rejected(self.model, self.graph)
        request.future.set_exception(
            Overloaded(
                f"{self.model}: waited more than {self.policy.queue_timeout:g} s in the "
                f"{self.graph} queue; retry later",
                self.retry_after(),
            )
        )

    def retire(self) -> None:
        """For a graph replaced by a new version: finish what is queued, then let the worker
        stop once the queue is empty. Unlike ``close`` nothing is refused: a request that took
        the old graph just before the swap still runs on it (the worker starts again)."""
        self._retired = True
        if self._arrived is not None:
            self._arrived.set()

    async def close(self) -> None:
        """Refuse new requests, finish the queued ones, then stop the worker."""
        self._closed = True
        if self._worker is not None:
            assert self._arrived is not None
            while (self._queue and not self._worker.done()) or self._running:
                self._arrived.set()
                await asyncio.sleep(0.001)
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def _serve(self) -> None:
        """Take a batch whenever an instance is free; until then requests keep queueing, so
        batches grow with the load."""
        assert self._arrived is not None
        free = asyncio.Semaphore(self.policy.instances)
        while True:
            if not self._queue:
                if self._retired:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await free.acquire()
            if self.policy.max_delay > 0 and self._queue:  # time-outs may have emptied it
                await self._hold_open(self._queue[0].queued_at + self.policy.max_delay)
            if not self._queue:
                free.release()
                continue
            task = asyncio.create_task(self._dispatch(self._take(), free))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _dispatch(self, batch: list[_Request], free: asyncio.Semaphore) -> None:
        started = time.perf_counter()
        rows = sum(r.rows for r in batch)
        if self._observer:
            for request in batch:
                self._observer.queue_wait(self.model, self.graph, started - request.queued_at)
            self._observer.batch_run(self.model, self.graph, rows, len(batch))
            self._observer.queue_depth(self.model, self.graph, len(self._queue))
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, batch)
        except BaseException as exc:  # the run itself failed: every request learns why
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            free.release()
        per_row = (time.perf_counter() - started) / max(rows, 1) / self.policy.instances
        self._seconds_per_row = 0.8 * self._seconds_per_row + 0.2 * per_row
        for request, (ok, value) in zip(batch, results, strict=True):
            if request.future.done():  # the client went away
                if ok and self._observer:
                    self._observer.discarded(self.model, self.graph, request.rows)
                continue
            if ok:
                request.future.set_result(value)
            else:
                request.future.set_exception(value)

    async def _hold_open(self, deadline: float) -> None:
        assert self._arrived is not None
        while self._queued_rows < self.policy.max_batch:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    def _take(self) -> list[_Request]:
        """The oldest request, and after it, in order, every queued request with the same input
        shapes that still fits in ``max_batch`` rows."""
        first = self._queue.popleft()
        batch, rows, kept = [first], first.rows, deque[_Request]()
        while self._queue:
            request = self._queue.popleft()
            fits = rows + request.rows <= self.policy.max_batch
            if fits and request.signature == first.signature:
                batch.append(request)
                rows += request.rows
            else:
                kept.append(request)
                if not fits:
                    break
        kept.extend(self._queue)
        self._queue = kept
        self._queued_rows -= rows
        for request in batch:
            if request.expiry is not None:
                request.expiry.cancel()
        return batch

    def _run_batch(self, batch: list[_Request]) -> list[tuple[bool, Any]]:
        """In the worker thread: one run for the whole batch, then each request's finish."""
        live = [r for r in batch if not r.future.cancelled()]
        if not live:
            return [(False, None)] * len(batch)
        if len(live) == 1:
            outputs = [self._run(live[0].feeds)]
        else:
            feeds = {k: np.concatenate([r.feeds[k] for r in live]) for k in live[0].feeds}
            merged = self._run(feeds)
            cuts = np.cumsum([r.rows for r in live])[:-1]
            split = {k: np.split(v, cuts) for k, v in merged.items()}
            outputs = [{k: parts[i] for k, parts in split.items()} for i in range(len(live))]
        # Pair outputs with the requests they were computed for: one cancelled during the run
        # still gets (and drops) its own rows, never a neighbour's.
        by_request = {id(r): out for r, out in zip(live, outputs, strict=True)}
        results: list[tuple[bool, Any]] = []
        for request in batch:
            out = by_request.get(id(request))
            if out is None:
                results.append((False, None))
                continue
            try:
                results.append((True, request.finish(out) if request.finish else out))
            except Exception as exc:
                results.append((False, exc))
        return results


def _refuse(future: asyncio.Future[Any], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


def _rows(feeds: Feeds) -> int:
    sizes = {len(v) for v in feeds.values()}
    if len(sizes) != 1:
        raise ValueError(f"feeds disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()

"""Dynamic micro-batching: concurrent requests for one graph coalesce into one onnxruntime run.

A batch is dispatched as soon as the graph is free. While a run is under way, new requests
queue, and the next run takes all of them (up to ``max_batch`` rows), so batches grow with the
load and a lone request pays no delay. ``max_delay`` (Triton's ``max_queue_delay_microseconds``)
optionally holds a batch open a little longer for more rows to arrive. The queue is bounded:
when it is full a request is refused at once with ``Overloaded``, which carries a retry hint, and
so is a request that waited longer than ``queue_timeout`` for its turn.

Each request may bring a ``finish`` function, run on the request's slice of the outputs in the
graph's worker thread right after the run (e.g. PNG encoding), so the event loop only routes.

**Classes** (``queue_policy="classes"``, the default). A request is *interactive* or *bulk*: the
class its caller states (``REQUEST_CLASS``, which the HTTP layer sets from a header or the API
key), else interactive when it has at most ``interactive_rows`` rows. Each class waits in a
lane of its own, and a batch holds one class. When an instance frees, the interactive lane
goes first (up to ``max_batch`` rows); bulk work runs as pieces of ``chunk_rows`` rows, so that
a small request waits at most for one piece, never for a whole large request (pieces are
small while interactive requests come, ``interactive_window``; each piece boundary costs a
turn of the event loop, which a busy machine makes slow).
Bulk keeps ``bulk_share`` of the rows run while both lanes wait, so it is never starved. The
pieces of a request are joined, in order, before its ``finish``: a row's values never depend on
the rows it is batched with (``tests/service/runtime/test_scheduling.py``), so the answer is the
same bytes. ``queue_policy="arrival"`` serves every request in arrival order, whole (a request
larger than ``max_batch`` as pieces of ``max_batch``), as Mosec, LitServe and Ray Serve do.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

import numpy as np

from service.errors import Overloaded

Feeds = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]
Finish = Callable[[Outputs], Any]
QueuePolicy = Literal["classes", "arrival"]


class RequestClass(StrEnum):
    """Who waits first for a graph: interactive work (an app's few images) before bulk."""

    INTERACTIVE = "interactive"
    BULK = "bulk"


REQUEST_CLASS: ContextVar[RequestClass | None] = ContextVar("request_class", default=None)
"""The class the work of the current task was stated to be (None: by its size). The HTTP layer
sets it around an operation's call, as the deadline is; every graph the operation runs reads
it."""


class BatchObserver(Protocol):
    def register(self, model: str, graph: str) -> None: ...
    def batch_run(self, model: str, graph: str, rows: int, requests: int) -> None: ...
    def queue_wait(self, model: str, graph: str, seconds: float) -> None: ...
    def class_served(
        self, model: str, graph: str, klass: str, rows: int, waited: float | None
    ) -> None: ...
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
    queue_policy: QueuePolicy = "classes"
    """"classes": interactive first, bulk in pieces; "arrival": in arrival order, whole."""
    interactive_rows: int = 4
    """A request of at most this many rows is interactive unless its caller says otherwise."""
    chunk_rows: int = 16
    """Rows of bulk work in one run (at most ``max_batch``): the most an interactive request
    waits behind."""
    bulk_share: float = 0.25
    """The share of the rows run that bulk work keeps while both classes wait."""
    interactive_window: float = 0.5
    """Seconds after an interactive request during which bulk work runs in pieces (as it does
    while one waits); with none that recent, a bulk run takes up to ``max_batch`` rows, as in
    arrival order."""
    inline_rows: int = 0
    """An interactive request of at most this many rows that finds the graph idle runs in the
    caller's thread (the event loop's), not the worker thread; 0: never."""

    def class_of(self, rows: int) -> RequestClass:
        return REQUEST_CLASS.get() or class_by_size(rows, self.interactive_rows)


def class_by_size(rows: int, interactive_rows: int) -> RequestClass:
    """A request's class when its caller states none."""
    return RequestClass.INTERACTIVE if rows <= interactive_rows else RequestClass.BULK


Signature = tuple[tuple[str, tuple[int, ...], str], ...]


@dataclass(eq=False)
class _Request:
    feeds: Feeds
    rows: int
    finish: Finish | None
    future: asyncio.Future[Any]
    klass: RequestClass = RequestClass.INTERACTIVE
    queued_at: float = field(default_factory=time.perf_counter)
    expiry: asyncio.TimerHandle | None = None
    taken: int = 0
    """Rows handed to runs so far; the request leaves its lane when all are."""
    parts: list[tuple[int, Outputs]] = field(default_factory=list)
    """The outputs of its pieces that have run, by first row (in the worker threads)."""
    signature: Signature = ()
    """Requests batch together only if every input agrees beyond the batch axis."""

    def __post_init__(self) -> None:
        self.signature = tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(self.feeds.items()))


Piece = tuple[_Request, int, int]
"""Rows [start, stop) of a request, in one run."""


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
        self._interactive: deque[_Request] = deque()
        self._bulk: deque[_Request] = deque()
        """In arrival order, every request waits here."""
        self._queued_rows = 0
        self._served = {RequestClass.INTERACTIVE: 0, RequestClass.BULK: 0}
        """Rows run since the bulk lane was last empty: bulk's share is counted over them."""
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        if observer:
            observer.register(model, graph)
        self._running: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(
            policy.instances, thread_name_prefix=f"ort-{model}-{graph}"
        )
        self._joining = threading.Lock()  # the pieces of one request end in two threads
        self._interactive_at = -math.inf
        """perf_counter() when the last interactive request came."""
        self._seconds_per_row = 0.001  # running estimate, for Retry-After
        self._closed = False
        self._retired = False

    @property
    def _classes(self) -> bool:
        return self.policy.queue_policy == "classes"

    @property
    def busy(self) -> bool:
        """Requests are queued or a batch is running."""
        return bool(self._interactive or self._bulk or self._running)

    @property
    def depth(self) -> int:
        return len(self._interactive) + len(self._bulk)

    async def submit(self, feeds: Feeds, finish: Finish | None = None) -> Any:
        """Queue one request and wait for its share of a batched run (after ``finish``). Its
        class is the one stated in ``REQUEST_CLASS``, else the policy's by its rows."""
        if self._closed:
            raise Overloaded(f"{self.model}: graph {self.graph!r} is shutting down", 1.0)
        if self.depth >= self.policy.queue_limit:
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
        klass = self.policy.class_of(rows)
        request = _Request(feeds, rows, finish, loop.create_future(), klass)
        if klass is RequestClass.INTERACTIVE:
            self._interactive_at = request.queued_at
        if self._idle and klass is RequestClass.INTERACTIVE and rows <= self.policy.inline_rows:
            return self._run_inline(request)
        self._lane(request).append(request)
        self._queued_rows += rows
        if self.policy.queue_timeout > 0:
            request.expiry = loop.call_later(self.policy.queue_timeout, self._expire, request)
        request.future.add_done_callback(lambda future: self._settled(request))
        assert self._arrived is not None
        self._arrived.set()
        return await request.future

    @property
    def _idle(self) -> bool:
        return not self._running and not self._interactive and not self._bulk

    def _run_inline(self, request: _Request) -> Any:
        """A small request that finds the graph idle runs at once in the event loop's thread:
        no hand-off to the worker thread and back. The loop does nothing else meanwhile, so
        requests that came with it wait, and their runs follow one another on the loop rather
        than overlap with its HTTP work (docs/performance.md)."""
        request.taken = request.rows
        if self._observer:
            self._observer.queue_wait(self.model, self.graph, 0.0)
            self._observer.class_served(
                self.model, self.graph, request.klass.value, request.rows, 0.0
            )
            self._observer.batch_run(self.model, self.graph, request.rows, 1)
        ((state, value),) = self._run_batch([(request, 0, request.rows)])
        if state == "failed":
            raise value
        return value

    def _lane(self, request: _Request) -> deque[_Request]:
        interactive = self._classes and request.klass is RequestClass.INTERACTIVE
        return self._interactive if interactive else self._bulk

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind a worker to this event loop. Requests left queued by a worker that stopped are
        refused (where their loop still runs) rather than left waiting forever."""
        for request in (*self._interactive, *self._bulk):
            if request.expiry is not None:
                request.expiry.cancel()
            owner = request.future.get_loop()
            if not request.future.done() and not owner.is_closed():
                error = Overloaded(f"{self.model}: the {self.graph} worker restarted", 1.0)
                owner.call_soon_threadsafe(_refuse, request.future, error)
        self._interactive.clear()
        self._bulk.clear()
        self._queued_rows = 0
        self._arrived = asyncio.Event()
        name = f"batcher-{self.model}-{self.graph}"
        self._worker = loop.create_task(self._serve(), name=name)

    def retry_after(self) -> float:
        """Seconds until the queue as it is now has drained, at the recent speed."""
        return max(1.0, math.ceil(self._queued_rows * self._seconds_per_row))

    def _settled(self, request: _Request) -> None:
        """A request answered, failed or cancelled while rows of it still wait (it was
        cancelled, timed out, or a piece of it failed) leaves its lane at once."""
        if request.expiry is not None:
            request.expiry.cancel()
        if request.taken == request.rows:
            return
        try:
            self._lane(request).remove(request)
        except ValueError:  # its lane was cleared
            return
        self._queued_rows -= request.rows - request.taken
        request.taken = request.rows

    def _expire(self, request: _Request) -> None:
        """A request still queued at its deadline, none of it run, is refused rather than run
        late."""
        if request.future.done() or request.taken > 0:
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
            while (self.depth and not self._worker.done()) or self._running:
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
            if not self.depth:
                if self._retired:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await free.acquire()
            if self.policy.max_delay > 0 and self.depth:  # time-outs may have emptied it
                oldest = min(lane[0].queued_at for lane in (self._interactive, self._bulk) if lane)
                await self._hold_open(oldest + self.policy.max_delay)
            if not self.depth:
                free.release()
                continue
            task = asyncio.create_task(self._dispatch(self._take(), free))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _dispatch(self, batch: list[Piece], free: asyncio.Semaphore) -> None:
        started = time.perf_counter()
        rows = sum(stop - start for _, start, stop in batch)
        if self._observer:
            for request, start, stop in batch:
                waited = started - request.queued_at if start == 0 else None
                if waited is not None:
                    self._observer.queue_wait(self.model, self.graph, waited)
                self._observer.class_served(
                    self.model, self.graph, request.klass.value, stop - start, waited
                )
            self._observer.batch_run(self.model, self.graph, rows, len(batch))
            self._observer.queue_depth(self.model, self.graph, self.depth)
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, batch)
        except BaseException as exc:  # the run itself failed: every request learns why
            for request, _, _ in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            free.release()
        per_row = (time.perf_counter() - started) / max(rows, 1) / self.policy.instances
        self._seconds_per_row = 0.8 * self._seconds_per_row + 0.2 * per_row
        for (request, start, stop), (state, value) in zip(batch, results, strict=True):
            if request.future.done():  # the client went away
                if state != "dropped" and self._observer:
                    self._observer.discarded(self.model, self.graph, stop - start)
                continue
            if state == "ok":
                request.future.set_result(value)
            elif state == "failed":
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

    def _take(self) -> list[Piece]:
        """The next run's pieces. In arrival order: the oldest request, and after it, in order,
        every queued request with the same input shapes that still fits in ``max_batch`` rows.
        By class, a batch is of one class: the interactive requests, whole, up to ``max_batch``
        rows; else, or when bulk is owed its share, bulk rows up to ``chunk_rows`` (while
        interactive requests come; else up to ``max_batch``). Topped up with bulk rows, an
        interactive batch would take as long as a piece of bulk work."""
        max_batch = self.policy.max_batch
        if not self._classes:
            batch: list[Piece] = []
            self._bulk = self._fill(batch, self._bulk, max_batch, split=False)
            return self._taken(batch)
        recent = (
            bool(self._interactive)
            or time.perf_counter() - self._interactive_at <= self.policy.interactive_window
        )
        chunk = min(self.policy.chunk_rows, max_batch) if recent else max_batch
        served = self._served
        owed = served[RequestClass.BULK] < self.policy.bulk_share * sum(served.values())
        batch = []
        if self._interactive and not (self._bulk and owed):
            self._interactive = self._fill(batch, self._interactive, max_batch, split=False)
        else:
            self._bulk = self._fill(batch, self._bulk, chunk, split=True)
        return self._taken(batch)

    def _fill(
        self, batch: list[Piece], lane: deque[_Request], limit: int, split: bool
    ) -> deque[_Request]:
        """Add rows of ``lane`` to ``batch`` in order, up to ``limit`` rows in all, of requests
        with the batch's input shapes; a request that does not fit is split when ``split`` (or
        when it is the batch's first), else ends the filling. Returns the lane left."""
        rows = sum(stop - start for _, start, stop in batch)
        kept: deque[_Request] = deque()
        while lane and rows < limit:
            request = lane.popleft()
            if batch and request.signature != batch[0][0].signature:
                kept.append(request)
                continue
            start, left, room = request.taken, request.rows - request.taken, limit - rows
            if left <= room:
                batch.append((request, start, request.rows))
                request.taken, rows = request.rows, rows + left
            elif split or not batch:
                batch.append((request, start, start + room))
                request.taken, rows = start + room, limit
                kept.append(request)  # the rest of it stays first in line
            else:
                kept.append(request)
                break
        kept.extend(lane)
        return kept

    def _taken(self, batch: list[Piece]) -> list[Piece]:
        for request, start, stop in batch:
            self._queued_rows -= stop - start
            self._served[request.klass] += stop - start
            if request.expiry is not None and start == 0:
                request.expiry.cancel()
        if not self._bulk:  # bulk's share counts from when it waits again
            self._served = dict.fromkeys(self._served, 0)
        return batch

    def _run_batch(self, batch: list[Piece]) -> list[tuple[str, Any]]:
        """In the worker thread: one run for the whole batch, then the finish of each request
        whose rows have all run. Each piece's state: "ok" (the request's answer), "part" (more
        of it to come), "failed" (its finish raised), "dropped" (it was cancelled)."""
        live = [piece for piece in batch if not piece[0].future.cancelled()]
        if not live:
            return [("dropped", None)] * len(batch)
        if len(live) == 1 and live[0][1] == 0 and live[0][2] == live[0][0].rows:
            outputs = [self._run(live[0][0].feeds)]
        else:
            feeds = {
                k: np.concatenate([r.feeds[k][start:stop] for r, start, stop in live])
                for k in live[0][0].feeds
            }
            merged = self._run(feeds)
            cuts = np.cumsum([stop - start for _, start, stop in live])[:-1]
            split = {k: np.split(v, cuts) for k, v in merged.items()}
            outputs = [{k: parts[i] for k, parts in split.items()} for i in range(len(live))]
        # Pair outputs with the pieces they were computed for: a request cancelled during the
        # run still gets (and drops) its own rows, never a neighbour's.
        by_piece = {id(p): out for p, out in zip(live, outputs, strict=True)}
        results: list[tuple[str, Any]] = []
        for piece in batch:
            out = by_piece.get(id(piece))
            if out is None:
                results.append(("dropped", None))
                continue
            request = piece[0]
            whole = self._joined(piece, out)
            if whole is None:
                results.append(("part", None))
                continue
            try:
                results.append(("ok", request.finish(whole) if request.finish else whole))
            except Exception as exc:
                results.append(("failed", exc))
        return results

    def _joined(self, piece: Piece, out: Outputs) -> Outputs | None:
        """The request's outputs once this piece completes them, its pieces in row order;
        None while some are still to run."""
        request, start, stop = piece
        if start == 0 and stop == request.rows:
            return out
        with self._joining:
            request.parts.append((start, out))
            if sum(len(next(iter(o.values()))) for _, o in request.parts) < request.rows:
                return None
            parts = [o for _, o in sorted(request.parts, key=lambda part: part[0])]
        return {k: np.concatenate([o[k] for o in parts]) for k in parts[0]}


def _refuse(future: asyncio.Future[Any], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


def _rows(feeds: Feeds) -> int:
    sizes = {len(v) for v in feeds.values()}
    if len(sizes) != 1:
        raise ValueError(f"feeds disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()

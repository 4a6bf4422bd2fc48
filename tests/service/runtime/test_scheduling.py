"""The batcher's classes, driven directly (no HTTP): interactive rows first at each batch
boundary, bulk work in pieces that a small request slips between, bulk's guaranteed share, and
answers that are the same bytes whichever way the rows were batched."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import numpy as np
import pytest

from service.registry.registry import Registry
from service.runtime.batching import (
    REQUEST_CLASS,
    Batcher,
    BatchPolicy,
    Feeds,
    Outputs,
    QueuePolicy,
    RequestClass,
)
from service.runtime.slots import LocalSlots

WIDTH = 3


class Runs:
    """A graph stand-in that doubles its input and remembers, run by run, which rows it ran
    (each row is tagged by its first value); it can be held at a gate."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.runs: list[list[float]] = []
        self.seconds = seconds
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, feeds: Feeds) -> Outputs:
        self.gate.wait(5)
        time.sleep(self.seconds)
        self.runs.append([float(v) for v in feeds["x"][:, 0]])
        return {"y": feeds["x"] * 2}


def tagged(first: int, n: int) -> np.ndarray:
    """n rows whose first values are first, first + 1, ..."""
    x = np.zeros((n, WIDTH), np.float32)
    x[:, 0] = np.arange(first, first + n)
    x[:, 1:] = np.random.default_rng(first).standard_normal((n, WIDTH - 1))
    return x


def test_an_interactive_request_runs_before_the_rest_of_a_bulk_request() -> None:
    runs = Runs()
    runs.gate.clear()
    batcher = Batcher(
        runs, BatchPolicy(max_batch=64, chunk_rows=8, instances=1, interactive_window=math.inf)
    )
    bulk_rows, small = tagged(0, 64), tagged(1000, 1)
    finished: list[str] = []

    async def main() -> tuple[Any, Any]:
        async def timed(name: str, x: np.ndarray) -> Any:
            out = await batcher.submit({"x": x})
            finished.append(name)
            return out

        bulk = asyncio.ensure_future(timed("bulk", bulk_rows))
        await asyncio.sleep(0.05)  # its first piece runs (held at the gate); the rest waits
        interactive = asyncio.ensure_future(timed("interactive", small))
        await asyncio.sleep(0.01)
        runs.gate.set()
        return await bulk, await interactive

    bulk_out, small_out = asyncio.run(main())
    assert runs.runs[0] == list(range(8))  # the first piece, already running
    assert runs.runs[1] == [1000]  # the interactive row next, alone: not as long as a piece
    assert runs.runs[2:] == [list(range(i, i + 8)) for i in range(8, 64, 8)]
    assert finished == ["interactive", "bulk"]
    np.testing.assert_array_equal(bulk_out["y"], bulk_rows * 2)  # the pieces joined in order
    np.testing.assert_array_equal(small_out["y"], small * 2)


def test_in_arrival_order_a_small_request_waits_for_the_whole_large_one() -> None:
    runs = Runs()
    runs.gate.clear()
    batcher = Batcher(runs, BatchPolicy(max_batch=64, queue_policy="arrival", instances=1))

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit({"x": tagged(5000, 1)}))
        await asyncio.sleep(0.05)
        bulk = asyncio.ensure_future(batcher.submit({"x": tagged(0, 64)}))
        await asyncio.sleep(0.01)
        small = asyncio.ensure_future(batcher.submit({"x": tagged(1000, 1)}))
        await asyncio.sleep(0.01)
        runs.gate.set()
        await asyncio.gather(first, bulk, small)

    asyncio.run(main())
    assert [len(run) for run in runs.runs] == [1, 64, 1]


def test_bulk_keeps_its_share_under_a_continuous_interactive_stream() -> None:
    runs = Runs(seconds=0.002)
    policy = BatchPolicy(
        max_batch=64, chunk_rows=8, instances=1, bulk_share=0.25, interactive_window=math.inf
    )
    batcher = Batcher(runs, policy)
    stop = asyncio.Event

    async def main() -> tuple[int, float]:
        done = stop()
        served = 0

        async def client(i: int) -> None:
            nonlocal served
            while not done.is_set():  # always one interactive row waiting per client
                await batcher.submit({"x": tagged(10_000 + i, 1)})
                served += 1

        clients = [asyncio.ensure_future(client(i)) for i in range(16)]
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        out = await batcher.submit({"x": tagged(0, 64)})
        took = time.perf_counter() - started
        done.set()
        await asyncio.gather(*clients)
        np.testing.assert_array_equal(out["y"], tagged(0, 64) * 2)
        return served, took

    served, took = asyncio.run(main())
    assert served > 100  # the stream went on all along
    bulk_runs = [run for run in runs.runs if any(v < 1000 for v in run)]
    assert len(bulk_runs) == 8  # 64 rows in pieces of 8
    rows_while_bulk_waited = sum(
        len(run)
        for run in runs.runs[runs.runs.index(bulk_runs[0]) : runs.runs.index(bulk_runs[-1]) + 1]
    )
    assert 64 / rows_while_bulk_waited >= 0.2  # about bulk_share of the rows run meanwhile
    assert took < 2.0


def test_with_no_interactive_request_of_late_bulk_work_runs_whole() -> None:
    runs = Runs()
    policy = BatchPolicy(max_batch=64, chunk_rows=8, instances=1, interactive_window=0.2)
    batcher = Batcher(runs, policy)

    async def main() -> None:
        await batcher.submit({"x": tagged(0, 64)})  # no interactive request yet: whole
        await batcher.submit({"x": tagged(1000, 1)})
        await batcher.submit({"x": tagged(0, 64)})  # one just came: in pieces
        await asyncio.sleep(0.3)
        await batcher.submit({"x": tagged(0, 64)})  # none for longer than the window: whole

    asyncio.run(main())
    assert [len(run) for run in runs.runs] == [64, 1, *[8] * 8, 64]


def test_with_no_window_bulk_work_runs_in_pieces_only_while_an_interactive_request_waits() -> None:
    runs = Runs()
    runs.gate.clear()
    policy = BatchPolicy(max_batch=8, chunk_rows=4, instances=1, interactive_window=0)
    batcher = Batcher(runs, policy)

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit({"x": tagged(5000, 1)}))
        await asyncio.sleep(0.05)  # running, held at the gate
        bulk = asyncio.ensure_future(batcher.submit({"x": tagged(0, 16)}))
        await asyncio.sleep(0.01)
        small = [
            asyncio.ensure_future(batcher.submit({"x": tagged(1000 + 10 * i, 4)})) for i in range(3)
        ]
        await asyncio.sleep(0.01)
        runs.gate.set()
        await asyncio.gather(first, bulk, *small)

    asyncio.run(main())
    # two small requests fill a batch; bulk, owed its share while the third waits, runs a piece;
    # with nothing interactive left, the rest of it runs in whole batches
    assert [len(run) for run in runs.runs] == [1, 8, 4, 4, 8, 4]
    assert runs.runs[2] == [0, 1, 2, 3]
    assert runs.runs[3] == [1020, 1021, 1022, 1023]


def test_a_stated_class_overrides_the_size() -> None:
    runs = Runs()
    runs.gate.clear()
    batcher = Batcher(
        runs, BatchPolicy(max_batch=64, chunk_rows=8, instances=1, interactive_window=math.inf)
    )

    async def submit(x: np.ndarray, klass: RequestClass) -> Any:
        REQUEST_CLASS.set(klass)  # this task's own context, as the HTTP layer sets it
        return await batcher.submit({"x": x})

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit({"x": tagged(5000, 1)}))
        await asyncio.sleep(0.05)
        small_bulk = asyncio.ensure_future(submit(tagged(0, 1), RequestClass.BULK))
        await asyncio.sleep(0.01)
        large_interactive = asyncio.ensure_future(submit(tagged(100, 20), RequestClass.INTERACTIVE))
        await asyncio.sleep(0.01)
        runs.gate.set()
        await asyncio.gather(first, small_bulk, large_interactive)

    asyncio.run(main())
    # the 20 interactive rows first, then the bulk row
    assert runs.runs[1] == list(range(100, 120))
    assert runs.runs[2] == [0]


def test_a_request_cancelled_between_its_pieces_leaves_the_queue() -> None:
    runs = Runs()
    runs.gate.clear()
    batcher = Batcher(
        runs, BatchPolicy(max_batch=64, chunk_rows=8, instances=1, interactive_window=math.inf)
    )

    async def main() -> Any:
        bulk = asyncio.ensure_future(batcher.submit({"x": tagged(0, 64)}))
        await asyncio.sleep(0.05)  # its first piece is running
        bulk.cancel()
        await asyncio.sleep(0.01)
        assert batcher.depth == 0
        after = asyncio.ensure_future(batcher.submit({"x": tagged(500, 2)}))
        runs.gate.set()
        return await after

    np.testing.assert_array_equal(asyncio.run(main())["y"], tagged(500, 2) * 2)
    assert [len(run) for run in runs.runs] == [8, 2]  # no more of the cancelled request ran


@pytest.mark.parametrize("policy", ["classes", "arrival"])
def test_a_real_graph_answers_the_same_bytes_in_pieces(
    registry: Registry, policy: QueuePolicy
) -> None:
    """A row's values never depend on the rows it runs with, so a request run in pieces (and
    beside other requests) gets the bytes one run of it alone gives."""
    graph = registry.get("vae-tiny").graphs["decoder"]
    z = np.random.default_rng(3).standard_normal((64, 8), dtype=np.float32)
    alone = graph.run({"z": z})
    chunks = BatchPolicy(max_batch=64, chunk_rows=5, queue_policy=policy, interactive_window=9)
    pieces = Batcher(graph.run, chunks)

    async def main() -> list[Any]:
        small = [pieces.submit({"z": z[i : i + 1]}) for i in range(3)]
        return list(await asyncio.gather(pieces.submit({"z": z}), *small))

    whole, *small = asyncio.run(main())
    for name in alone:
        assert whole[name].tobytes() == alone[name].tobytes()
        for i, out in enumerate(small):
            assert out[name].tobytes() == alone[name][i : i + 1].tobytes()


def test_a_freed_sampling_slot_goes_to_an_interactive_request_first() -> None:
    async def scenario() -> list[str]:
        slots, order = LocalSlots(1), []
        assert await slots.acquire(math.inf)  # a sampling under way

        async def wait(name: str, klass: RequestClass) -> None:
            assert await slots.acquire(math.inf, klass)
            order.append(name)
            await asyncio.sleep(0.01)
            slots.release()

        waiting = [asyncio.ensure_future(wait("bulk", RequestClass.BULK))]
        await asyncio.sleep(0.01)
        waiting.append(asyncio.ensure_future(wait("interactive", RequestClass.INTERACTIVE)))
        await asyncio.sleep(0.01)
        slots.release()
        await asyncio.gather(*waiting)
        return order

    assert asyncio.run(scenario()) == ["interactive", "bulk"]


def test_bulk_samplings_keep_their_share_of_the_slots() -> None:
    async def scenario() -> tuple[int, int]:
        slots, turns = LocalSlots(1, bulk_share=0.25), {"interactive": 0, "bulk": 0}
        done = asyncio.Event()

        async def client(klass: RequestClass) -> None:
            while not done.is_set():
                assert await slots.acquire(math.inf, klass)
                turns[klass.value] += 1
                await asyncio.sleep(0.001)
                slots.release()

        clients = [client(RequestClass.INTERACTIVE) for _ in range(4)]
        clients.append(client(RequestClass.BULK))
        running = [asyncio.ensure_future(c) for c in clients]
        await asyncio.sleep(0.3)
        done.set()
        await asyncio.gather(*running)
        return turns["interactive"], turns["bulk"]

    interactive, bulk = asyncio.run(scenario())
    assert interactive > 50 and bulk / (interactive + bulk) >= 0.2


def test_a_small_request_to_an_idle_graph_runs_in_the_callers_thread() -> None:
    runs = Runs()
    batcher = Batcher(runs, BatchPolicy(inline_rows=1, instances=1))

    def thread(out: Outputs) -> str:
        return threading.current_thread().name

    async def main() -> list[str]:
        alone = await batcher.submit({"x": tagged(0, 1)}, thread)
        runs.gate.clear()  # a larger request runs in the worker thread, held there
        larger = asyncio.ensure_future(batcher.submit({"x": tagged(0, 2)}, thread))
        await asyncio.sleep(0.05)
        behind = asyncio.ensure_future(batcher.submit({"x": tagged(5, 1)}, thread))
        await asyncio.sleep(0.01)
        runs.gate.set()
        return [alone, await larger, await behind]

    alone, larger, behind = asyncio.run(main())
    assert alone == threading.main_thread().name
    assert larger.startswith("ort-") and behind.startswith("ort-")  # the graph was busy

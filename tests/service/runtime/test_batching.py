"""The dynamic batcher, driven directly (no HTTP): coalescing, limits, failures, draining."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from service.api.content import wants_png
from service.errors import Overloaded
from service.registry.registry import Registry
from service.runtime.batching import Batcher, BatchPolicy, Feeds, Outputs


class Recorder:
    """A graph stand-in: doubles its input, remembers the batch sizes, can be held or broken."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.batches: list[int] = []
        self.seconds = seconds
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def __call__(self, feeds: Feeds) -> Outputs:
        self.gate.wait(5)
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("session broke")
        self.batches.append(len(feeds["x"]))
        return {"y": feeds["x"] * 2}


def rows(start: int, n: int, width: int = 3) -> np.ndarray:
    return np.arange(start, start + n * width, dtype=np.float32).reshape(n, width)


async def gather(*coros: Any) -> list[Any]:
    return list(await asyncio.gather(*coros, return_exceptions=True))


def test_concurrent_requests_coalesce_and_each_gets_its_own_rows() -> None:
    run = Recorder()
    run.gate.clear()  # hold the first run so that the others queue up behind it
    batcher = Batcher(run, BatchPolicy(max_batch=64, interactive_rows=8))  # one class

    async def main() -> list[Any]:
        first = asyncio.ensure_future(batcher.submit({"x": rows(0, 1)}))
        await asyncio.sleep(0.05)
        rest = [batcher.submit({"x": rows(10 * i, i)}) for i in range(1, 6)]
        await asyncio.sleep(0.01)
        run.gate.set()
        return await gather(first, *rest)

    results = asyncio.run(main())
    assert run.batches == [1, 1 + 2 + 3 + 4 + 5]
    for i, out in enumerate(results):
        expected = rows(0, 1) if i == 0 else rows(10 * i, i)
        np.testing.assert_array_equal(out["y"], expected * 2)


def test_max_batch_splits_the_queue_and_shapes_never_mix() -> None:
    run = Recorder()
    run.gate.clear()
    batcher = Batcher(run, BatchPolicy(max_batch=4))

    async def main() -> list[Any]:
        first = asyncio.ensure_future(batcher.submit({"x": rows(0, 1)}))
        await asyncio.sleep(0.05)
        same = [batcher.submit({"x": rows(0, 2)}) for _ in range(3)]
        wide = batcher.submit({"x": rows(0, 1, width=5)})
        run.gate.set()
        return await gather(first, *same, wide)

    results = asyncio.run(main())
    assert all(isinstance(r, dict) for r in results)
    assert run.batches == [1, 4, 2, 1]  # 2+2 fill one run, the third waits, width 5 runs alone
    assert results[-1]["y"].shape == (1, 5)


def test_a_full_queue_refuses_at_once_with_a_retry_hint() -> None:
    run = Recorder()
    run.gate.clear()
    batcher = Batcher(run, BatchPolicy(queue_limit=2))

    async def main() -> tuple[list[Any], float]:
        first = asyncio.ensure_future(batcher.submit({"x": rows(0, 1)}))
        await asyncio.sleep(0.05)  # running, so no longer queued
        queued = [asyncio.ensure_future(batcher.submit({"x": rows(0, 1)})) for _ in range(2)]
        await asyncio.sleep(0.01)
        start = time.perf_counter()
        with pytest.raises(Overloaded, match="queue is full") as refused:
            await batcher.submit({"x": rows(0, 1)})
        waited = time.perf_counter() - start
        assert refused.value.retry_after >= 1
        run.gate.set()
        return await gather(first, *queued), waited

    results, waited = asyncio.run(main())
    assert waited < 0.05
    assert all(isinstance(r, dict) for r in results)  # the accepted ones all succeed


def test_a_failed_run_fails_its_batch_and_the_batcher_recovers() -> None:
    run = Recorder()
    batcher = Batcher(run, BatchPolicy())

    async def main() -> tuple[list[Any], Any]:
        run.fail = True
        failed = await gather(batcher.submit({"x": rows(0, 1)}), batcher.submit({"x": rows(0, 2)}))
        run.fail = False
        return failed, await batcher.submit({"x": rows(0, 1)})

    failed, ok = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in failed)
    np.testing.assert_array_equal(ok["y"], rows(0, 1) * 2)


def test_finish_runs_per_request_and_its_error_stays_with_that_request() -> None:
    batcher = Batcher(Recorder(), BatchPolicy())

    def broken(out: Outputs) -> Any:
        raise ValueError("cannot encode")

    async def main() -> list[Any]:
        return await gather(
            batcher.submit({"x": rows(0, 2)}, lambda out: (threading.current_thread().name,)),
            batcher.submit({"x": rows(0, 1)}, broken),
        )

    named, failed = asyncio.run(main())
    assert named[0].startswith("ort-")  # finish ran in the worker thread, not the event loop
    assert isinstance(failed, ValueError)


def test_two_instances_run_batches_at_the_same_time() -> None:
    run = Recorder(seconds=0.2)
    batcher = Batcher(run, BatchPolicy(max_batch=1, instances=2))

    async def main() -> float:
        start = time.perf_counter()
        await gather(*(batcher.submit({"x": rows(0, 1)}) for _ in range(4)))
        return time.perf_counter() - start

    assert asyncio.run(main()) < 0.7  # 4 runs of 0.2 s, two at a time: about 0.4 s
    assert run.batches == [1, 1, 1, 1]


def test_max_delay_holds_a_batch_open_for_late_requests() -> None:
    run = Recorder()
    batcher = Batcher(run, BatchPolicy(max_batch=8, max_delay=0.2))

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit({"x": rows(0, 1)}))
        await asyncio.sleep(0.05)
        await gather(first, batcher.submit({"x": rows(0, 1)}))

    asyncio.run(main())
    assert run.batches == [2]


def test_close_finishes_queued_requests_then_refuses() -> None:
    run = Recorder(seconds=0.05)
    batcher = Batcher(run, BatchPolicy(max_batch=1))

    async def main() -> list[Any]:
        pending = [asyncio.ensure_future(batcher.submit({"x": rows(0, 1)})) for _ in range(3)]
        await asyncio.sleep(0.01)
        await batcher.close()
        with pytest.raises(Overloaded, match="shutting down"):
            await batcher.submit({"x": rows(0, 1)})
        return await gather(*pending)

    assert all(isinstance(r, dict) for r in asyncio.run(main()))


@pytest.mark.parametrize(
    ("accept", "png"),
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("image/png", True),
        ("image/png, application/json", True),
        ("application/json, image/png;q=0.5", False),
        ("image/png;q=0", False),
        ("text/html, image/png;q=0.9, */*;q=0.8", True),
        ("image/pngx", False),
    ],
)
def test_accept_header_negotiation(accept: str | None, png: bool) -> None:
    headers = [] if accept is None else [(b"accept", accept.encode())]
    assert wants_png({"type": "http", "headers": headers}) is png


def test_io_binding_path_gives_the_same_outputs(registry: Registry) -> None:
    """The CUDA path binds inputs and outputs; on CPU it must agree with a plain run."""
    graph = registry.get("vae-tiny").graphs["decoder"]
    z = np.random.default_rng(0).standard_normal((5, 8), dtype=np.float32)
    plain = graph.run({"z": z})
    try:
        graph.io_binding = True
        bound = graph.run({"z": z})
    finally:
        graph.io_binding = None
    assert bound.keys() == plain.keys()
    for name in plain:
        np.testing.assert_array_equal(bound[name], plain[name])


def test_a_request_cancelled_during_its_run_never_shifts_the_others_outputs() -> None:
    run = Recorder(seconds=0.2)
    batcher = Batcher(run, BatchPolicy(max_batch=8))

    async def main() -> list[Any]:
        blocker = asyncio.ensure_future(batcher.submit({"x": rows(100, 1)}))
        await asyncio.sleep(0.05)  # the blocker runs; the next three queue and batch together
        tasks = [asyncio.ensure_future(batcher.submit({"x": rows(i, 1)})) for i in range(3)]
        await asyncio.sleep(0.2)  # their batch is now running
        tasks[0].cancel()
        return await gather(blocker, *tasks)

    results = asyncio.run(main())
    assert run.batches == [1, 3]
    assert isinstance(results[1], asyncio.CancelledError)
    for i, out in enumerate(results[2:], start=1):
        np.testing.assert_array_equal(out["y"], rows(i, 1) * 2)


def test_a_request_cancelled_while_queued_leaves_the_queue() -> None:
    run = Recorder()
    run.gate.clear()
    batcher = Batcher(run, BatchPolicy(queue_limit=1))

    async def main() -> Any:
        first = asyncio.ensure_future(batcher.submit({"x": rows(0, 1)}))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(batcher.submit({"x": rows(0, 1)}))
        await asyncio.sleep(0.01)
        queued.cancel()
        await asyncio.sleep(0.01)
        assert batcher.depth == 0  # its place is free again
        again = asyncio.ensure_future(batcher.submit({"x": rows(5, 1)}))
        run.gate.set()
        await first
        return await again

    np.testing.assert_array_equal(asyncio.run(main())["y"], rows(5, 1) * 2)

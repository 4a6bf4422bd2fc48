"""Where the time of one ``POST /sample`` goes: the ASGI app driven in-process, no network.

    .venv/bin/python bench/profile_request_path.py [--model dcgan-fashion]
        [--threads] [--switch-intervals 0.005,0.001] [--profile]

Requests go straight into the app, ``--concurrency`` at a time, so the figures are the app's own
cost. The first line is the app's time per request (requests/s without HTTP). ``--threads`` adds the
worker threads' time per request (onnxruntime, and the per-request ``finish``), timed around
each batch. ``--switch-intervals`` repeats the run with other ``sys.setswitchinterval`` values:
if the rate moves with it, the event loop waits for the GIL that worker threads hold.
``--profile`` prints cProfile's top functions by own time. bench/profile_live.py splits the
live server's time by stage; docs/performance.md quotes both.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.args import store_parser  # noqa: E402
from service.api.app import create_app  # noqa: E402
from service.config import Settings  # noqa: E402


def _scope(length: int) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/sample", "raw_path": b"/sample", "query_string": b"",
        "root_path": "", "headers": [*headers, (b"content-length", str(length).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip


class Driver:
    def __init__(self, app: Any, body: bytes, concurrency: int) -> None:
        self.app, self.body, self.concurrency = app, body, concurrency

    async def one(self) -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError

        status = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(_scope(len(self.body)), receive, send)
        if status != 200:
            raise SystemExit(f"POST /sample answered {status}")

    async def rounds(self, count: int) -> float:
        """Seconds for ``count`` requests, ``concurrency`` at a time."""
        start = time.perf_counter()
        for _ in range(count // self.concurrency):
            await asyncio.gather(*(self.one() for _ in range(self.concurrency)))
        return time.perf_counter() - start


def time_worker_threads(app: Any) -> dict[str, float]:
    """Wrap every batcher's run and its requests' ``finish`` to time the worker threads' work."""
    totals: dict[str, float] = defaultdict(float)

    def timed(run: Callable[[Any], Any], stage: str) -> Callable[[Any], Any]:
        def timed_run(arg: Any) -> Any:
            start = time.perf_counter()
            try:
                return run(arg)
            finally:
                totals[stage] += time.perf_counter() - start

        return timed_run

    for model in app.state.registry.models.values():
        for graph in model.graphs.values():
            batcher = graph.batcher
            batcher._run = timed(batcher._run, "onnxruntime run")
            batcher._run_batch = timed(batcher._run_batch, "worker thread, all")
    return totals


def main() -> None:
    parser = store_parser(__doc__.split("\n")[0], "dcgan-fashion")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--threads", action="store_true")
    parser.add_argument("--switch-intervals", default="")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    app = create_app(Settings(model_store=args.store, device="cpu", workers=1))
    body = json.dumps({"model": args.model, "n": 1, "seed": 7}).encode()
    driver = Driver(app, body, args.concurrency)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await driver.rounds(200)  # warm-up
            seconds = await driver.rounds(args.requests)
            per_request = seconds / args.requests * 1e6
            rate = args.requests / seconds
            print(f"{per_request:.0f} µs per request, {rate:,.0f} requests/s ({args.model})")
            for interval in filter(None, args.switch_intervals.split(",")):
                default = sys.getswitchinterval()
                sys.setswitchinterval(float(interval))
                seconds = await driver.rounds(args.requests)
                sys.setswitchinterval(default)
                print(f"  switch interval {float(interval) * 1000:g} ms: "
                      f"{args.requests / seconds:,.0f} requests/s")  # fmt: skip
            if args.threads:
                threads = time_worker_threads(app)
                await driver.rounds(args.requests)
                for stage, total in threads.items():
                    print(f"  {stage}: {total / args.requests * 1e6:.0f} µs per request")
            if args.profile:
                profile = cProfile.Profile()
                profile.enable()
                await driver.rounds(1000)
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(25)

    asyncio.run(run())


if __name__ == "__main__":
    main()

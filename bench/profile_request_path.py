"""Where the event loop's time goes for one ``POST /sample``: the ASGI app driven in-process.

    .venv/bin/python bench/profile_request_path.py [--model dcgan-fashion] [--profile]

No network and no load generator: requests go straight into the app (32 at a time), so the
figure is the app's own cost per request. ``--profile`` adds a cProfile table of the event
loop's work, sorted by own time. docs/performance.md quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.api.app import create_app  # noqa: E402
from service.config import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=ROOT / "model_store")
    parser.add_argument("--model", default="dcgan-fashion")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    app = create_app(Settings(model_store=args.store, device="cpu"))
    body = json.dumps({"model": args.model, "n": 1, "seed": 7}).encode()

    async def one() -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError

        status = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(_scope(len(body)), receive, send)
        if status != 200:
            raise SystemExit(f"POST /sample answered {status}")

    async def rounds(count: int) -> float:
        start = time.perf_counter()
        for _ in range(count // args.concurrency):
            await asyncio.gather(*(one() for _ in range(args.concurrency)))
        return time.perf_counter() - start

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await rounds(200)  # warm-up
            seconds = await rounds(args.requests)
            per_request = seconds / args.requests * 1e6
            rate = args.requests / seconds
            print(f"{per_request:.0f} µs per request, {rate:,.0f} requests/s ({args.model})")
            if args.profile:
                profile = cProfile.Profile()
                profile.enable()
                await rounds(1000)
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(25)

    asyncio.run(run())


def _scope(length: int) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/sample", "raw_path": b"/sample", "query_string": b"",
        "root_path": "", "headers": [*headers, (b"content-length", str(length).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip


if __name__ == "__main__":
    main()

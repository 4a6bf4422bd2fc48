"""What ``genserve.Client`` adds to a request, against raw httpx doing the same request.

    .venv/bin/python bench/client_overhead.py                  dcgan-fashion, 2000 pairs
    .venv/bin/python bench/client_overhead.py --tiny --requests 200    the tests' tiny store

It starts ``python -m service`` on 127.0.0.1 and sends ``POST /sample {"model", "n": 1,
"seed", "format": "png"}`` at concurrency 1, alternating: raw httpx (one keep-alive
connection; ``post``, ``raise_for_status``, ``json()``), then ``Client.sample`` (its own
keep-alive connection; the request built, retries and time-out armed, the PNG decoded to a
float32 array), the order swapped every other pair. It reports the median of each, the
difference of the medians and the median of the paired differences, in ms. Target: the client
adds at most 0.2 ms. Only a run on a quiet machine gives figures to quote.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make genserve/ and bench/ importable
    sys.path.insert(0, str(REPO))

from genserve import Client  # noqa: E402
from harness.live_service import serve, timed  # noqa: E402

TARGET_MS = 0.2
WARMUP = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=REPO / "model_store")
    parser.add_argument("--tiny", action="store_true", help="serve the tests' tiny store")
    parser.add_argument("--model", help="default: dcgan-fashion, or dcgan-tiny with --tiny")
    parser.add_argument("--requests", type=int, default=2000, help="pairs of requests")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    store, model = args.store, args.model or "dcgan-fashion"
    if args.tiny:
        from tests.support.tiny_store import write_tiny_store

        store = write_tiny_store(Path(tempfile.mkdtemp(prefix="tiny_store_")))
        model = args.model or "dcgan-tiny"

    body = {"model": model, "n": 1, "seed": args.seed, "format": "png"}
    with (
        serve(store) as service,
        httpx.Client(base_url=service.url, timeout=60) as raw,
        Client(service.url, timeout=60) as client,
    ):

        def by_hand() -> object:
            response = raw.post("/sample", json=body)
            response.raise_for_status()
            return response.json()

        def with_client() -> object:
            return client.sample(model, n=1, seed=args.seed)

        for _ in range(WARMUP):
            by_hand()
            with_client()
        raw_s, client_s = [], []
        for i in range(args.requests):
            if i % 2:
                client_s.append(timed(with_client))
                raw_s.append(timed(by_hand))
            else:
                raw_s.append(timed(by_hand))
                client_s.append(timed(with_client))

    raw_ms, client_ms = statistics.median(raw_s) * 1e3, statistics.median(client_s) * 1e3
    paired_ms = statistics.median(c - r for c, r in zip(client_s, raw_s, strict=True)) * 1e3
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"store: {store}, model {model}; {args.requests} pairs at concurrency 1 on 127.0.0.1")
    print()
    print("| | median ms |")
    print("|---|---|")
    print(f"| raw httpx (post, json) | {raw_ms:.3f} |")
    print(f"| genserve.Client.sample (PNG decoded) | {client_ms:.3f} |")
    print(f"| difference of the medians | {client_ms - raw_ms:+.3f} |")
    print(f"| median of the paired differences | {paired_ms:+.3f} |")
    print()
    verdict = "within" if paired_ms <= TARGET_MS else "over"
    print(f"the client adds {paired_ms:.3f} ms: {verdict} the {TARGET_MS} ms target")


if __name__ == "__main__":
    main()

"""Mosec peer: POST /sample/<model> ``{"n": 1, "seed": 7}`` -> ``{"images": [...]}`` behind
Mosec's Rust HTTP server, ``--workers`` worker processes per model (``append_worker(num=...)``)
and Mosec's own batching (``max_wait_time`` in whole ms, at least 1; bench/README.md).

    python bench/peers/mosec_server.py --port 8002 [--workers 2] [--max-batch-size 64]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mosec import Server, Worker
from workload import DEFAULT_STORE, GraphSampler, peer_arguments, threads_per_worker

STORE_ENV = "GENSERVE_BENCH_STORE"  # read by the spawned worker processes
THREADS_ENV = "GENSERVE_BENCH_THREADS"


class SampleWorker(Worker):
    model = ""

    def __init__(self) -> None:
        super().__init__()
        store = Path(os.environ.get(STORE_ENV, DEFAULT_STORE))
        self.sampler = GraphSampler(self.model, store, int(os.environ.get(THREADS_ENV, "0")))

    def forward(self, data: Any) -> Any:
        if isinstance(data, dict):  # max_batch_size 1: one request, not a list
            return self.forward([data])[0]
        outputs = self.sampler.sample([(int(d.get("n", 1)), int(d.get("seed", 0))) for d in data])
        return [{"images": images} for images in outputs]


class DCGANWorker(SampleWorker):
    model = "dcgan-fashion"


class VAEWorker(SampleWorker):
    model = "vae-fashion"


def main() -> None:
    args = peer_arguments(
        __doc__.splitlines()[0],
        {"--port": 8002},
        ("--workers", "worker processes per model"),
        batch_timeout_help="rounded up to 1 ms",
    )

    os.environ[STORE_ENV] = str(args.store.resolve())
    os.environ[THREADS_ENV] = str(threads_per_worker(args.workers))
    wait_ms = max(1, round(args.batch_timeout_us / 1000))
    # Mosec reads its own settings from the command line.
    sys.argv = [sys.argv[0], "--address", args.host, "--port", str(args.port)]
    sys.argv += ["--timeout", "120000", "--log-level", "warning"]
    server = Server()
    for worker in (DCGANWorker, VAEWorker):
        server.append_worker(
            worker,
            num=args.workers,
            max_batch_size=args.max_batch_size,
            max_wait_time=wait_ms,
            route=f"/sample/{worker.model}",
        )
    server.run()


if __name__ == "__main__":
    main()

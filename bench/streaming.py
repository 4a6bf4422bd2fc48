"""Progress streams, disconnects and deadlines on a real service: the four targets of the
streaming work, measured side by side in one run on the shipped PixelCNN.

    .venv/bin/python bench/streaming.py                 pixelcnn-fashion, 5 rounds
    .venv/bin/python bench/streaming.py --rounds 2      a quick look

Each round measures, on ``python -m service`` on 127.0.0.1:

- abandoned: a fresh ``n: 1`` after three ``n: 16`` requests whose clients gave up after
  0.15 s, against the same ``n: 1`` alone (target: at most 0.2 s more);
- stop: an ``n: 16`` stream closed by its client after its second progress event, then an
  ``n: 1`` at once: its wait beyond ``n: 1`` alone is the time the sampler took to stop and
  free its slot, against the time of one row (target: at most one row);
- first event: from sending an ``n: 16`` stream request to its first event (target 100 ms);
- streamed: an ``n: 16`` sampling read as a stream to its ``result``, against the same plain
  call, interleaved (target: at most 5% longer).

Figures are medians over the rounds. Only a run on a quiet machine gives figures to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make bench/ importable
    sys.path.insert(0, str(REPO))

from harness.live_service import serve, timed  # noqa: E402

STREAM = {"Accept": "text/event-stream"}
ROWS = 28
FIGURES = ["abandoned_extra_s", "plain_s", "streamed_s", "first_event_ms", "row_ms", "stop_ms"]
"""What each round records; the table gives their medians."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=REPO / "model_store")
    parser.add_argument("--model", default="pixelcnn-fashion")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with serve(args.store, SERVICE_WORKERS="1") as service, httpx.Client(timeout=120) as http:
        url = f"{service.url}/sample"

        def plain(n: int, seed: int = 1) -> Any:
            response = http.post(url, json={"model": args.model, "n": n, "seed": seed})
            response.raise_for_status()
            return response.json()

        def streamed(n: int, seed: int = 1, stop_after: int | None = None) -> dict[str, Any]:
            """Read a stream; ``stop_after`` progress events, close it. Times of the first
            event and the end, from the send."""
            body = {"model": args.model, "n": n, "seed": seed}
            started = time.perf_counter()
            first, progress, result = None, 0, None
            with http.stream("POST", url, json=body, headers=STREAM) as response:
                response.raise_for_status()
                name = None
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        name = line[len("event: ") :]
                        first = first or time.perf_counter() - started
                    elif line.startswith("data: ") and name == "progress":
                        progress += 1
                        if stop_after is not None and progress >= stop_after:
                            break
                    elif line.startswith("data: ") and name == "result":
                        result = json.loads(line[len("data: ") :])
            return {"first_s": first, "end_s": time.perf_counter() - started, "result": result}

        plain(1)
        plain(16)
        rounds: dict[str, list[float]] = {key: [] for key in FIGURES}
        for _ in range(args.rounds):
            alone = min(timed(lambda: plain(1)) for _ in range(3))
            for _ in range(3):
                try:
                    http.post(url, json={"model": args.model, "n": 16}, timeout=0.15)
                except httpx.TimeoutException:
                    pass
            rounds["abandoned_extra_s"].append(timed(lambda: plain(1)) - alone)

            full_plain = timed(lambda: plain(16))
            full_stream = streamed(16)
            assert full_stream["result"] == plain(16), "the streamed result differs"
            rounds["plain_s"].append(full_plain)
            rounds["streamed_s"].append(full_stream["end_s"])
            rounds["first_event_ms"].append(full_stream["first_s"] * 1e3)
            rounds["row_ms"].append(full_plain / ROWS * 1e3)

            streamed(16, seed=2, stop_after=2)
            rounds["stop_ms"].append(max(0.0, timed(lambda: plain(1)) - alone) * 1e3)
            time.sleep(0.2)

    median = {key: statistics.median(values) for key, values in rounds.items()}
    ratio = median["streamed_s"] / median["plain_s"]
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"model {args.model}, one worker, {args.rounds} rounds, medians")
    print()
    print("| figure | measured | target |")
    print("|---|---:|---|")
    print(f"| n=1 after 3 abandoned n=16, beyond n=1 alone | {median['abandoned_extra_s']:.3f} s "
          "| ≤ 0.2 s |")  # fmt: skip
    print(f"| disconnect to the slot free | {median['stop_ms']:.0f} ms "
          f"| ≤ one row ({median['row_ms']:.0f} ms) |")  # fmt: skip
    print(f"| first event of a stream | {median['first_event_ms']:.1f} ms | ≤ 100 ms |")
    print(f"| n=16 streamed / plain | {median['streamed_s']:.3f} s / {median['plain_s']:.3f} s "
          f"= {ratio:.3f} | ≤ 1.05 |")  # fmt: skip


if __name__ == "__main__":
    main()

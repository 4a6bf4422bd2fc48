"""Autoregressive sampling: the service's exact fast sampler (the PixelCNN's windowed one, the
PixelRNN's row steps) against the naive one (H x W full passes of the model's graph).

    .venv/bin/python bench/fast_sampler.py [--model pixelcnn-fashion] [--n 16] [--repeats 3]

Both run in onnxruntime from the model store, with the same seed; the script checks that they
return the same samples and prints the median times and their ratio. Naive is run once (it is
slow, one to two minutes for 16 samples on 2 cores); the fast sampler ``--repeats`` times.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import anyio
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.api.app import load_store  # noqa: E402
from service.config import ServiceConfig, Settings  # noqa: E402
from service.generation import autoregressive  # noqa: E402
from service.generation.operations import Operations  # noqa: E402
from service.generation.reference import sample_naive  # noqa: E402
from service.generation.specs import Limits, SampleSpec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=ROOT / "model_store")
    parser.add_argument("--model", default="pixelcnn-fashion")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()

    settings = Settings(model_store=args.store, device="cpu")
    model = load_store(ServiceConfig.from_settings(settings))[0].get(args.model)
    sampler = autoregressive.fast_sampler(model)
    if sampler is None:
        sys.exit(f"{args.model} ships no fast sampler (the card's `sampler` and its graphs)")
    operations = Operations(Limits(max_n=args.n, max_autoregressive_n=args.n))

    async def fast() -> np.ndarray:
        images: np.ndarray = (await operations.sample(model, SampleSpec(args.n, args.seed))).payload
        return images

    fast_times, fast_images = [], None
    for _ in range(args.repeats):
        start = time.perf_counter()
        fast_images = anyio.run(fast)
        fast_times.append(time.perf_counter() - start)
    start = time.perf_counter()
    naive_images = sample_naive(model, args.n, args.seed)
    naive_time = time.perf_counter() - start

    assert fast_images is not None
    same = int((fast_images == naive_images).all(axis=(1, 2, 3)).sum())
    fast_median = statistics.median(fast_times)
    result = {
        "model": args.model,
        "sampler": sampler.kind,
        "n": args.n,
        "machine": f"{platform.processor() or platform.machine()}, {_cores()} cores",
        "naive_seconds": round(naive_time, 3),
        "fast_seconds_median": round(fast_median, 3),
        "fast_seconds": [round(t, 3) for t in fast_times],
        "speedup": round(naive_time / fast_median, 1),
        "identical_samples": f"{same}/{args.n}",
        "fast_ms_per_image": round(fast_median / args.n * 1000, 1),
    }
    family = model.ready_card.family
    print(f"{family} sampling, {args.n} samples of {args.model}, seed {args.seed}:")
    print(f"  naive (H x W full passes): {naive_time:8.2f} s")
    print(f"  fast ({sampler.kind}, exact): {fast_median:8.2f} s  (median of {args.repeats})")
    print(f"  speedup: {result['speedup']}x; identical samples: {result['identical_samples']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if same != args.n:
        sys.exit("the fast sampler disagreed with the naive one")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()

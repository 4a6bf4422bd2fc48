"""The p50 of one batch-1 run of a graph with one and with two onnxruntime threads, in a
session opened with the service's own options: how much of a lone request is the model itself.

    .venv/bin/python bench/ort_threads.py model_store/dcgan-fashion.generator/2/model.onnx
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from service.runtime.sessions import SessionTuning  # noqa: E402


def p50_ms(graph: str, threads: int, runs: int) -> float:
    options = SessionTuning(intra_op_threads=threads).options()
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    feeds = {
        first.name: np.random.default_rng(0).standard_normal((1, *first.shape[1:]), np.float32)
    }
    for _ in range(50):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("graph")
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    for threads in (1, 2):
        p50 = p50_ms(args.graph, threads, args.runs)
        print(f"{args.graph}: {threads} thread(s), p50 {p50:.3f} ms")


if __name__ == "__main__":
    main()

"""The p50 of one batch-1 run of a graph with one and with two onnxruntime threads, spinning
off, as the service opens its sessions: how much of a lone request is the model itself.

    .venv/bin/python bench/ort_threads.py model_store/dcgan-fashion.generator/2/model.onnx
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort


def p50_ms(graph: str, threads: int, runs: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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

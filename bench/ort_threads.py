"""The p50 of one run of a graph with one and with two onnxruntime threads, in a session opened
with the service's own options: how much of a request is the model itself, and at which batch
sizes. ``--ops`` adds onnxruntime's profile of one thread at the largest batch: each node's
share of the run.

    .venv/bin/python bench/ort_threads.py model_store/dcgan-fashion.generator/2/model.onnx
    .venv/bin/python bench/ort_threads.py GRAPH --batches 1,8,16,64 --ops
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from service.runtime.sessions import SessionTuning  # noqa: E402


def _session(graph: str, threads: int, profile_prefix: str | None = None) -> ort.InferenceSession:
    options = SessionTuning(intra_op_threads=threads).options()
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _feeds(session: ort.InferenceSession, batch: int) -> dict[str, np.ndarray]:
    first = session.get_inputs()[0]
    shape = (batch, *first.shape[1:])
    return {first.name: np.random.default_rng(0).standard_normal(shape, np.float32)}


def p50_ms(graph: str, threads: int, runs: int, batch: int = 1) -> float:
    session = _session(graph, threads)
    feeds = _feeds(session, batch)
    for _ in range(max(3, 50 // batch)):
        session.run(None, feeds)
    times = []
    for _ in range(max(5, runs // batch)):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def node_shares(graph: str, batch: int, runs: int = 50) -> list[tuple[str, str, float, float]]:
    """(op type, node, share of the runs' node time, ms per run), largest first."""
    with tempfile.TemporaryDirectory(prefix="genserve-ort-profile-") as folder:
        session = _session(graph, 1, str(Path(folder) / "profile"))
        feeds = _feeds(session, batch)
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: Counter[tuple[str, str]] = Counter()
    for event in events:
        name = event["name"]
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            node = name.removesuffix("_kernel_time")
            totals[(event["args"]["op_name"], node)] += event["dur"]
    whole = sum(totals.values())
    return [(op, node, us / whole, us / runs / 1e3) for (op, node), us in totals.most_common()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("graph")
    parser.add_argument("--runs", type=int, default=500, help="runs of batch 1; fewer at larger")
    parser.add_argument("--batches", default="1", help="comma-separated batch sizes")
    parser.add_argument("--ops", action="store_true", help="profile the nodes at the largest batch")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    for batch in batches:
        for threads in (1, 2):
            p50 = p50_ms(args.graph, threads, args.runs, batch)
            print(
                f"{args.graph}: batch {batch}, {threads} thread(s), p50 {p50:.3f} ms, "
                f"{p50 / batch:.3f} ms per row"
            )
    if args.ops:
        print(f"nodes at batch {max(batches)}, one thread:")
        for op, node, share, ms in node_shares(args.graph, max(batches))[:8]:
            print(f"  {share:6.1%}  {ms:7.3f} ms per run  {op}  {node}")


if __name__ == "__main__":
    main()

"""Memory held by onnxruntime's CPU arenas, one per session against one per process: every
graph file of the store opened in this process, then each batched graph run at batches of 1,
8, 64, 64, 3 and 64. Prints the resident size above the bare process after the sessions open
and after the runs.

    .venv/bin/python bench/arena_memory.py --arenas per-session
    .venv/bin/python bench/arena_memory.py --arenas shared     # as the service runs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from service.runtime.sessions import register_shared_cpu_arena  # noqa: E402

BATCHES = (1, 8, 64, 64, 3, 64)
UNBATCHED = ("pixelcnn", "pixelrnn", "classifier")
"""The autoregressive graphs run row by row, and the classifier is not served."""


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def feeds(session: ort.InferenceSession, batch: int) -> dict[str, np.ndarray]:
    out = {}
    for tensor in session.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in tensor.shape]
        dtype = np.float32 if "float" in tensor.type else np.int64
        out[tensor.name] = np.zeros(shape, dtype)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arenas", choices=["per-session", "shared"], required=True)
    parser.add_argument("--store", type=Path, default=REPO / "model_store")
    args = parser.parse_args()
    bare = rss_mib()
    sessions = []
    for graph in sorted(args.store.glob("*/[0-9]*/*.onnx")):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.enable_mem_reuse = 1, False
        if args.arenas == "shared":
            register_shared_cpu_arena()
            options.add_session_config_entry("session.use_env_allocators", "1")
        sessions.append(
            (graph, ort.InferenceSession(str(graph), options, ["CPUExecutionProvider"]))
        )
    opened = rss_mib() - bare
    for graph, session in sessions:
        if not any(name in graph.parts[-3] for name in UNBATCHED):
            for batch in BATCHES:
                session.run(None, feeds(session, batch))
    print(f"{args.arenas}: {len(sessions)} graphs, {opened:.0f} MiB after opening, "
          f"{rss_mib() - bare:.0f} MiB after the runs")  # fmt: skip


if __name__ == "__main__":
    main()

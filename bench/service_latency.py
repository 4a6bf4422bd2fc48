"""Start the service on 127.0.0.1 with a store and measure it (a script, not a test).

    python bench/service_latency.py [--store model_store] [--requests 300]
    python bench/service_latency.py --tiny          # tests' tiny ONNX models (needs onnx)

Reports: seconds from process start until /health/ready is 200, p50/p90 latency of single
sequential requests for each model and operation, and the server's RSS (VmRSS, VmHWM from
/proc/<pid>/status) with every model loaded and after the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make the service and harness/ importable
    sys.path.insert(0, str(REPO))

from harness.live_service import serve  # noqa: E402


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def requests_for(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    name, ops = model["name"], model["operations"]
    image = [[[0.5] * model["image_shape"][2]] * model["image_shape"][1]]
    bodies: dict[str, dict[str, Any]] = {}
    if "sample" in ops:
        bodies["sample"] = {"model": name, "n": 1, "seed": 0}
    if "encode" in ops:
        bodies["encode"] = {"model": name, "images": [image]}
    if "reconstruct" in ops:
        bodies["reconstruct"] = {"model": name, "images": [image]}
    if "interpolate" in ops:
        end = {"seed": 1} if "sample" in ops else {"image": image}
        bodies["interpolate"] = {"model": name, "start": end, "end": end, "steps": 8}
    return bodies


def measure(client: httpx.Client, path: str, body: dict[str, Any], count: int) -> list[float]:
    client.post(path, json=body).raise_for_status()  # warm the path once
    times = []
    for _ in range(count):
        start = time.perf_counter()
        client.post(path, json=body).raise_for_status()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=REPO / "model_store")
    parser.add_argument("--tiny", action="store_true", help="serve the tests' tiny store")
    parser.add_argument("--requests", type=int, default=300, help="per model and operation")
    parser.add_argument("--autoregressive-requests", type=int, default=10)
    parser.add_argument("--device", default=os.environ.get("SERVICE_DEVICE", "auto"))
    args = parser.parse_args()

    store = args.store
    if args.tiny:
        from tests.support.tiny_store import write_tiny_store

        store = write_tiny_store(Path(tempfile.mkdtemp(prefix="tiny_store_")))
    if not any(store.glob("*.v*.json")):
        sys.exit(f"{store} holds no models; pass --store or --tiny")

    with serve(store, SERVICE_DEVICE=args.device) as service:
        status, body = service.get("/health/ready")
        if status != 200:  # the store is loaded before the first answer: a 503 stays a 503
            sys.exit(f"the service is not ready: {body.get('error', body)}")
        ready_s, loaded = service.ready_s, memory_kib(service.process.pid)
        rows = []
        with httpx.Client(base_url=service.url, timeout=300) as client:
            models = client.get("/models").json()["models"]
            for model in models:
                for operation, body in requests_for(model).items():
                    slow = model["family"] == "pixelcnn"
                    count = args.autoregressive_requests if slow else args.requests
                    times = measure(client, f"/{operation}", body, count)
                    p50 = statistics.median(times) * 1e3
                    p90 = statistics.quantiles(times, n=10)[-1] * 1e3 if count > 1 else p50
                    rows.append((model["name"], operation, model["provider"], count, p50, p90))
        after = memory_kib(service.process.pid)

    print(f"store: {store}")
    print(f"start-up until /health/ready is 200: {ready_s:.2f} s")
    mib = {key: value / 1024 for key, value in after.items()}
    print(
        f"RSS with every model loaded: {loaded['VmRSS'] / 1024:.1f} MiB "
        f"(after the run {mib['VmRSS']:.1f} MiB, peak {mib['VmHWM']:.1f} MiB)"
    )
    print()
    header = f"{'model':<24} {'operation':<12} {'provider':<24} {'requests':>8} {'p50 ms':>9} "
    print(header + f"{'p90 ms':>9}")
    print("-" * (len(header) + 9))
    for name, operation, provider, count, p50, p90 in rows:
        print(f"{name:<24} {operation:<12} {provider:<24} {count:>8} {p50:>9.2f} {p90:>9.2f}")


if __name__ == "__main__":
    main()

"""The first run on an NVIDIA GPU, in one command: ``make gpu-check`` (bench/README.md).

The service with SERVICE_DEVICE=cuda: every graph on CUDAExecutionProvider, then ``POST
/sample`` against raw onnxruntime on CUDA, written to docs/bench/gpu.md. Without a GPU
(``nvidia-smi -L`` lists none) the same on the CPU fallback, as tests/bench/test_gpu_check.py
runs it; ``--device`` forces either. SERVICE_* variables in the environment reach the service
(SERVICE_WORKERS is 2 unless set, as deploy/k8s/gpu/ runs it).

    make gpu-check                                        # writes docs/bench/gpu.md
    .venv/bin/python bench/gpu_check.py --requests 8 --seconds 0.2 --out /tmp/gpu.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make service/ and bench/ importable
    sys.path.insert(0, str(REPO))

import onnxruntime as ort  # noqa: E402

from bench.peers import workload  # noqa: E402
from harness.live_service import Call, Json, Service, drive, percentile, serve  # noqa: E402

PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def gpu_name() -> str | None:
    """The first GPU ``nvidia-smi -L`` lists, or None (no driver, no GPU)."""
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in listed.stdout.splitlines() if line.startswith("GPU ")]
    return lines[0] if listed.returncode == 0 and lines else None


def graph_providers(service: Service) -> list[tuple[str, str, str]]:
    """(model, graph role, provider) for every graph of every ready model."""
    _, listing = service.get("/models")
    return [
        (model["name"], role, provider)
        for model in listing["models"]
        if model["state"] == "ready"
        for role, provider in sorted(model["providers"].items())
    ]


@dataclass
class Point:
    model: str
    n: int
    concurrency: int
    requests: int = 0
    errors: int = 0
    images_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    raw_images_per_s: float = 0.0


def measure_service(service: Service, point: Point, requests: int) -> None:
    """``requests`` POST /sample of ``point.n`` images over ``point.concurrency`` connections,
    after one wave that warms the connections and this batch shape."""
    n = point.n

    def check(body: Json) -> str | None:
        return None if len(body.get("images", [])) == n else f"{len(body['images'])} images"

    def call(i: int) -> Call:
        return Call("/sample", {"model": point.model, "n": n, "seed": i}, check)

    asyncio.run(drive(service.url, call, point.concurrency, point.concurrency))
    started = time.perf_counter()
    outcomes = asyncio.run(drive(service.url, call, requests, point.concurrency))
    seconds = time.perf_counter() - started
    ok = [o.seconds for o in outcomes if o.ok]
    point.requests, point.errors = len(outcomes), len(outcomes) - len(ok)
    point.images_per_s = len(ok) * n / seconds
    point.p50_ms, point.p99_ms = percentile(ok, 50) * 1e3, percentile(ok, 99) * 1e3


def raw_onnxruntime(model: str, provider: str, batch: int, seconds: float) -> float:
    """Images/s of the model's image graph alone in this process, on ``provider``: ``batch``
    divided by the median run (numpy in and out, as the service feeds it)."""
    graph = workload.graph_file(model)
    session = workload.open_session(graph.path, provider=provider)
    if session.get_providers()[0] != provider:
        raise SystemExit(f"raw onnxruntime: {model} runs on {session.get_providers()}")
    feeds = {"z": workload.latents(0, batch, graph.latent_dim)}
    session.run(["image"], feeds)  # warm this shape
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        start = time.perf_counter()
        session.run(["image"], feeds)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def report(
    args: argparse.Namespace,
    argv: list[str],
    settings: dict[str, str],
    gpu: str | None,
    providers: list[tuple[str, str, str]],
    points: list[Point],
) -> str:
    device = settings["SERVICE_DEVICE"]
    lines = [
        "# The service on a GPU: providers, and images/s against raw onnxruntime",
        "",
        f"Written by `{shlex.join(['python', 'bench/gpu_check.py', *argv])}` (`make gpu-check`).",
        "",
        f"- device: **{device}**, {gpu or 'no NVIDIA GPU: the CPU fallback, not a GPU figure'}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, onnxruntime {ort.__version__} "
        f"({ort.get_available_providers()})",
        "- service settings: " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())),
        f"- load: {args.requests} requests a point (at least 4 waves), after one warm-up wave; "
        f"raw onnxruntime: the median run over {args.seconds} s a batch size",
        "",
        "## Execution provider of every graph",
        "",
        "| model | graph | provider |",
        "| --- | --- | --- |",
        *(f"| {m} | {role} | {provider} |" for m, role, provider in providers),
        "",
        "## POST /sample against raw onnxruntime",
        "",
        "Raw onnxruntime runs the model's image graph at batch = images per request, one run at "
        "a time: no HTTP, no batching across requests, no PNG encoding.",
        "",
        "| model | images/request | concurrency | requests | errors | images/s | p50 ms "
        "| p99 ms | raw onnxruntime images/s | service / raw |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in points:
        ratio = p.images_per_s / p.raw_images_per_s if p.raw_images_per_s else float("nan")
        lines.append(
            f"| {p.model} | {p.n} | {p.concurrency} | {p.requests} | {p.errors} "
            f"| {p.images_per_s:,.0f} | {p.p50_ms:.1f} | {p.p99_ms:.1f} "
            f"| {p.raw_images_per_s:,.0f} | {ratio:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--models", default="dcgan-fashion,vae-fashion")
    parser.add_argument("--images", type=_ints, default=[1, 64])
    parser.add_argument("--concurrency", type=_ints, default=[1, 64])
    parser.add_argument("--requests", type=int, default=512, help="per point, at least 4 waves")
    parser.add_argument("--seconds", type=float, default=3.0, help="raw onnxruntime, per batch")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "gpu.md")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    gpu = gpu_name()
    device = ("cuda" if gpu else "cpu") if args.device == "auto" else args.device
    provider = PROVIDERS[device]
    print(f"device {device} ({gpu or 'no NVIDIA GPU'})", file=sys.stderr)
    points: list[Point] = []
    # The environment's SERVICE_* reach the service; SERVICE_WORKERS defaults to 2, as
    # deploy/k8s/gpu/ runs it (a CPU limit of 2), not to one worker per core of this machine.
    settings = {k: v for k, v in os.environ.items() if k.startswith("SERVICE_")}
    settings = {"SERVICE_WORKERS": "2", **settings, "SERVICE_DEVICE": device}
    with serve(workload.DEFAULT_STORE, **settings) as service:
        providers = graph_providers(service)
        wrong = [row for row in providers if row[2] != provider]
        if not providers or wrong:
            print(f"graphs not on {provider}: {wrong or 'no ready model'}", file=sys.stderr)
            return 1
        for model in args.models.split(","):
            for n in args.images:
                for c in args.concurrency:
                    point = Point(model, n, c)
                    measure_service(service, point, max(args.requests, 4 * c))
                    points.append(point)
                    print(
                        f"{model} n={n} c={c}: {point.images_per_s:,.0f} images/s, "
                        f"p50 {point.p50_ms:.1f} ms, {point.errors} errors",
                        file=sys.stderr,
                    )
    raw: dict[tuple[str, int], float] = {}  # the service has stopped: the device is raw's
    for point in points:
        key = (point.model, point.n)
        if key not in raw:
            raw[key] = raw_onnxruntime(point.model, provider, point.n, args.seconds)
        point.raw_images_per_s = raw[key]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(args, argv, settings, gpu, providers, points))
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if any(p.errors for p in points) else 0


if __name__ == "__main__":
    sys.exit(main())

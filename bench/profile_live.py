"""Where the live server's time goes for ``POST /sample``: ``python -m service`` (one worker) on
127.0.0.1 under wrk, sampled by py-spy, every sample of every thread put in one stage.

    .venv/bin/python bench/profile_live.py [--model dcgan-fashion] [--concurrency 64]

Two recordings of the same load: every sample (where each thread's time goes), and only the
samples where the thread holds the GIL (``py-spy --gil``). A stage's share of the event loop
times the loop's busy seconds, over the requests answered meanwhile, is its cost per request.
The loop's samples that do not hold the GIL and are not idle are the loop waiting for it.
Needs wrk (Debian) and py-spy (bench/requirements.txt).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.args import store_parser  # noqa: E402
from harness.live_service import serve  # noqa: E402

WRK_SCRIPT = ROOT / "bench" / "wrk" / "fixed_count.lua"
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
        r"^latents \(service/generation/operations|numpy/_core/_ufunc_config",
    ),
    (
        "batcher: queue, futures, timers",
        r"service/runtime/batching|^(\w+\.)?(call_later|call_at|create_future|add_done_callback) ",
    ),
    ("operation: checks, labels, result", r"service/generation/(operations|checks|labels|specs)"),
    ("model resolution", r"service/registry/(registry|families)"),
    ("route: spec, finish, content negotiation", r"service/api/(routes|running|content)"),
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
FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^()]+):\d+\)$")


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


def main() -> None:
    parser = store_parser(__doc__.split("\n\n")[0], "dcgan-fashion")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()

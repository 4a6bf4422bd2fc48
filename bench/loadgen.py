"""Load: wrk with a fixed request count against a server, and the in-process onnxruntime limit;
the progress lines and the CPU's name that the load benches print."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.peers import workload
from bench.servers import Request

FIXED_COUNT_LUA = Path(__file__).resolve().parent / "wrk" / "fixed_count.lua"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
STARTED = time.perf_counter()


def say(text: str) -> None:
    """A progress line on stderr, after the seconds since the bench started."""
    print(f"[{time.perf_counter() - STARTED:6.1f} s] {text}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return "unknown CPU"


@dataclass
class LoadResult:
    requests: int
    """Responses received (2xx or not)."""
    ok: int
    errors: int
    """Non-2xx responses plus socket errors and time-outs."""
    seconds: float
    requests_per_s: float
    """Over the steady window, from the first wave's end to the last response (or over the
    whole run when it had fewer than four waves or was cut short)."""
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    complete: bool
    """False when wrk's time cap ended the run before the fixed count came back."""


def run_wrk(
    url: str, request: Request, requests: int, connections: int, cap_s: float, timeout_s: float
) -> LoadResult:
    """``requests`` POSTs of ``request``'s body and headers (the URL is ``url``) over
    ``connections`` keep-alive connections, one wrk thread. A JSON body goes to the script in
    BENCH_BODY, raw bytes in a file named by BENCH_BODY_FILE; headers in BENCH_HEADERS."""
    # Time from the end of the first wave, given three more waves at least (responses of a
    # batching server come in bursts); else time the whole run.
    skip = connections if requests >= 4 * connections else 0
    env = {**os.environ, "BENCH_REQUESTS": str(requests), "BENCH_SKIP": str(skip)}
    env["BENCH_PACE_MS"] = f"{request.pace_ms:g}"
    for name in ("BENCH_BODY", "BENCH_BODY_FILE", "BENCH_HEADERS"):
        env.pop(name, None)
    if request.headers:
        env["BENCH_HEADERS"] = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
    command = [WRK, "-t1", f"-c{connections}", f"-d{max(1, round(cap_s))}s"]
    command += [f"--timeout={max(1, round(timeout_s))}s", "-s", str(FIXED_COUNT_LUA), url]
    with TemporaryDirectory(prefix="genserve-wrk-") as folder:
        if isinstance(request.body, bytes):
            body_file = Path(folder) / "body"
            body_file.write_bytes(request.body)
            env["BENCH_BODY_FILE"] = str(body_file)
        else:
            env["BENCH_BODY"] = json.dumps(request.body)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=cap_s + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {done.stdout[-500:]} {done.stderr[-500:]}")
    r = json.loads(line.removeprefix("WRK_RESULT "))
    received, seconds = r["ok"] + r["non2xx"], r["duration_us"] / 1e6
    errors = r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    complete = received >= requests
    if complete and r["window_us"] > 0:
        rate = (requests - skip) / (r["window_us"] / 1e6)
    else:  # cut short: the whole run is the only window
        rate = received / max(seconds, 1e-9)
    latencies = [r[f"{q}_us"] / 1e3 for q in ("p50", "p90", "p99", "max")]  # in the fields' order
    return LoadResult(received, r["ok"], errors, seconds, rate, *latencies, complete)


def wrk_version() -> str:
    done = subprocess.run([WRK, "-v"], capture_output=True, text=True)
    first = (done.stdout + done.stderr).splitlines()[0]  # "wrk 4.1.0 [epoll] Copyright ..."
    return first.split(" Copyright")[0].removeprefix("wrk ").strip()


@dataclass
class RawResult:
    batch: int
    images_per_s: float
    p50_ms: float
    """Median of one run at this batch."""
    runs: int
    png: bool = False
    """True when each run also encoded its images as base64 PNGs."""


def raw_onnxruntime(
    sampler: workload.GraphSampler, batches: list[int], seconds: float, png: bool = True
) -> list[RawResult]:
    """The sampler's graph alone, in this process: images/s and p50 of one run for each batch
    size; then (``png``) the same with base64 PNG encoding, at batch 1 and at the best batch."""

    def timed(batch: int, png: bool) -> RawResult:
        feeds = {"z": workload.latents(0, batch, sampler.latent_dim)}
        sampler.session.run(["image"], feeds)  # warm this shape
        times: list[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 5:
            start = time.perf_counter()
            (images,) = sampler.session.run(["image"], feeds)
            if png:
                workload.png_base64(images)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)  # robust to the bursts of a shared machine
        return RawResult(batch, batch / median, median * 1e3, len(times), png)

    results = [timed(batch, png=False) for batch in batches]
    if not png:
        return results
    best = max(results, key=lambda r: r.images_per_s)
    return results + [timed(batch, png=True) for batch in sorted({1, best.batch})]

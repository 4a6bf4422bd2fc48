"""Reliability figures, each against a real ``python -m service`` on 127.0.0.1.

    .venv/bin/python bench/reliability.py                 every figure (docs/reliability.md)
    .venv/bin/python bench/reliability.py --quick         a short run of each
    .venv/bin/python bench/reliability.py soak overload   some of them

schemathesis   generated cases against /openapi.json: server errors, responses off the schema
soak           requests at concurrency 64, every image decoded and checked; RSS growth
overload       concurrency 512 against a small queue: rejection p99, accepted that failed,
               recovery once the load stops
reload         failed requests while two models are reloaded under load (new versions too)
corrupt        start-up with one model broken each way: the others serve, readiness says why
shutdown       SIGTERM with requests in flight: they all finish

The store is the repository's model_store/ unless --store says otherwise; each figure works on
a copy when it changes files. tests/test_reliability.py runs small versions of the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make service/ and bench/ importable
    sys.path.insert(0, str(REPO))

from bench.live_service import (  # noqa: E402
    Call,
    Json,
    Outcome,
    Service,
    Workload,
    decode_png,
    drive,
    histogram_p99,
    serve,
    tally_problems,
    to_ms,
)
from bench.store_faults import CORRUPTIONS, copy_store, publish_next_version  # noqa: E402
from modelstore.discovery import discover  # noqa: E402

SHIPPED_STORE = REPO / "model_store"
ADMIN_TOKEN = "reliability-bench-token"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


# ---------------------------------------------------------------- the figures


@dataclass
class SchemathesisFigure:
    operations: int
    generated: int
    server_errors: int
    schema_breaks: int
    failures: list[str]
    seconds: float


SERVER_ERROR = "ST101"
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "missing_required_header",
    "ignored_auth",
]
"""Every check but positive_data_acceptance: a request can fit the schema and still break a
limit that depends on the settings or the model (n <= SERVICE_MAX_N, a 28x28 PNG), a 422."""


def schemathesis_figure(service: Service, examples: int, seed: int = 1) -> SchemathesisFigure:
    """Run the schemathesis CLI on /openapi.json (one worker: hypothesis's parser is not
    thread-safe on Python 3.11). Serve with an admin token, and the admin routes are fuzzed
    without it (all 401): with it, a generated unload would take a model away from the run."""
    with tempfile.TemporaryDirectory() as reports:
        # A generated timeout_ms of 1 is answered 504 deadline_exceeded, as documented: that is
        # the service keeping its word, not a server error (no other route answers 504).
        config = Path(reports, "schemathesis.toml")
        config.write_text(
            '[checks.not_a_server_error]\nexpected-statuses = ["2xx", "3xx", "4xx", "504"]\n'
        )
        command = [
            str(SCHEMATHESIS), "--config-file", str(config),
            "run", f"{service.url}/openapi.json", "--checks", ",".join(CHECKS),
            "--max-examples", str(examples), "--seed", str(seed), "--workers", "1",
            "--report", "json", "--report-dir", reports, "--request-timeout", "60",
        ]  # fmt: skip
        started = time.perf_counter()
        # cwd: schemathesis and hypothesis keep caches in the working directory.
        run = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=reports)
        seconds = time.perf_counter() - started
        found = list(Path(reports).glob("*.json"))
        if not found:
            raise RuntimeError(f"schemathesis wrote no report:\n{run.stdout[-3000:]}{run.stderr}")
        report = json.loads(found[0].read_text())
    failures = report["failures"]
    return SchemathesisFigure(
        operations=report["operations"]["tested"],
        generated=report["test_cases"]["generated"],
        server_errors=sum(f["count"] for f in failures if f["code"] == SERVER_ERROR),
        schema_breaks=sum(f["count"] for f in failures if f["code"] != SERVER_ERROR),
        failures=[f"{f['code']} {f['title']}: {', '.join(f['operations'])}" for f in failures]
        + [str(e) for e in report.get("errors", [])],
        seconds=round(seconds, 1),
    )


@dataclass
class SoakFigure:
    requests: int
    concurrency: int
    errors: int
    integrity_failures: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    rss_start_mib: float
    rss_end_mib: float
    rss_growth_pct: float
    rss_mib_every_tenth: list[float]
    """RSS after each tenth of the run: a leak climbs, allocator warm-up levels off."""
    problems: list[str]


def soak(service: Service, requests: int, concurrency: int, warm_up: int) -> SoakFigure:
    """``warm_up`` requests first (RSS is measured after them), then ``requests`` more, each one
    checked: status, shape, every PNG decodes, and a seed renders as its reference does."""
    workload = Workload.prepare(service)
    asyncio.run(drive(service.url, workload.call, warm_up, concurrency))
    rss_start = service.rss_bytes()
    outcomes: list[Outcome] = []
    samples = []
    started = time.perf_counter()
    for tenth in range(10):
        count = requests * (tenth + 1) // 10 - requests * tenth // 10
        calls = partial(_shifted, workload.call, warm_up + len(outcomes))
        outcomes += asyncio.run(drive(service.url, calls, count, concurrency))
        samples.append(round(service.rss_bytes() / 2**20, 1))
    seconds = time.perf_counter() - started
    rss_end = service.rss_bytes()
    latencies = [o.seconds for o in outcomes]
    return SoakFigure(
        requests=len(outcomes),
        concurrency=concurrency,
        errors=sum(o.status != 200 for o in outcomes),
        integrity_failures=sum(o.status == 200 and o.problem is not None for o in outcomes),
        requests_per_s=round(len(outcomes) / seconds, 1),
        p50_ms=to_ms(latencies, 50),
        p99_ms=to_ms(latencies, 99),
        rss_start_mib=round(rss_start / 2**20, 1),
        rss_end_mib=round(rss_end / 2**20, 1),
        rss_growth_pct=round(100 * (rss_end - rss_start) / rss_start, 2),
        rss_mib_every_tenth=samples,
        problems=tally_problems(outcomes, lambda o: o.ok),
    )


def _shifted(call: Callable[[int], Call], offset: int, i: int) -> Call:
    return call(offset + i)


OVERLOAD_SETTINGS = {
    "SERVICE_BATCH_QUEUE_LIMIT": "8",
    "SERVICE_BATCH_MAX_SIZE": "64",
    "SERVICE_QUEUE_TIMEOUT_MS": "2000",
}


@dataclass
class OverloadFigure:
    requests: int
    concurrency: int
    accepted: int
    rejected: int
    failed: int
    """Neither a whole, right 200 nor a proper refusal (503 overloaded + Retry-After)."""
    rejection_p50_ms: float
    rejection_p99_ms: float
    """As the client saw it: mostly waiting for the event loop among 512 connections."""
    rejection_in_server_p99_ms: float
    """Upper bound of the histogram bucket holding the p99 of the service's own 503 timings."""
    accepted_p99_ms: float
    rss_growth_pct: float
    recovery_ok: int
    recovery_requests: int
    recovery_first_ok_ms: float
    problems: list[str]


def overload(store: Path, requests: int, concurrency: int, recovery: int = 50) -> OverloadFigure:
    """Far more concurrent requests than a small queue holds (OVERLOAD_SETTINGS), each sampling
    16 images; then, load gone, ``recovery`` requests one at a time."""
    with serve(store, **OVERLOAD_SETTINGS) as service:
        workload = Workload.prepare(service)

        def heavy(i: int) -> Call:
            body = {"model": workload.models.sampler, "n": 16, "seed": i}
            return Call("/sample", body, lambda r: workload.check_sample(r, 16, None))

        rss_start = service.rss_bytes()
        outcomes = asyncio.run(drive(service.url, heavy, requests, concurrency))
        rss_end = service.rss_bytes()
        in_server_p99 = histogram_p99(service, "genserve_request_duration_seconds", "503")
        started = time.perf_counter()
        after = asyncio.run(drive(service.url, workload.call, recovery, 1))
        first_ok = next((i for i, o in enumerate(after) if o.ok), None)
        first_ok_s = (
            sum(o.seconds for o in after[: first_ok + 1])
            if first_ok is not None
            else time.perf_counter() - started
        )
    refused = [o for o in outcomes if o.refused]
    accepted = [o for o in outcomes if o.status == 200]
    return OverloadFigure(
        requests=len(outcomes),
        concurrency=concurrency,
        accepted=len(accepted),
        rejected=len(refused),
        failed=sum(not (o.ok or o.refused) for o in outcomes),
        rejection_p50_ms=to_ms([o.seconds for o in refused], 50),
        rejection_p99_ms=to_ms([o.seconds for o in refused], 99),
        rejection_in_server_p99_ms=round(in_server_p99 * 1000, 1),
        accepted_p99_ms=to_ms([o.seconds for o in accepted], 99),
        rss_growth_pct=round(100 * (rss_end - rss_start) / rss_start, 2),
        recovery_ok=sum(o.ok for o in after),
        recovery_requests=len(after),
        recovery_first_ok_ms=round(first_ok_s * 1000, 1),
        problems=tally_problems(outcomes + after, lambda o: o.ok or o.refused),
    )


@dataclass
class ReloadFigure:
    reloads: int
    new_versions: int
    requests: int
    failed: int
    concurrency: int
    versions_served: list[int]
    reload_p50_s: float
    reload_max_s: float
    rss_start_mib: float
    """Under load, before the first reload."""
    rss_end_mib: float
    """Under load, after the last: a version that is never freed shows here."""
    problems: list[str] = field(default_factory=list)


def hot_reload(store: Path, reloads: int, concurrency: int) -> ReloadFigure:
    """Load on both models while each is reloaded ``reloads`` times through /admin, every
    other time after a new version was published into the store."""
    with tempfile.TemporaryDirectory() as tmp:
        store = copy_store(store, Path(tmp) / "store")
        with serve(store, SERVICE_ADMIN_TOKEN=ADMIN_TOKEN) as service:
            workload = Workload.prepare(service)
            run = _Reloads(service, store, reloads)
            outcomes = asyncio.run(run.under_load(workload, concurrency))
    return ReloadFigure(
        reloads=len(run.seconds),
        new_versions=run.published,
        requests=len(outcomes),
        failed=sum(not o.ok for o in outcomes),
        concurrency=concurrency,
        versions_served=sorted({o.version for o in outcomes if o.version is not None}),
        reload_p50_s=round(statistics.median(run.seconds), 3),
        reload_max_s=round(max(run.seconds), 3),
        rss_start_mib=round(run.rss[0] / 2**20, 1),
        rss_end_mib=round(run.rss[-1] / 2**20, 1),
        problems=tally_problems(outcomes, lambda o: o.ok),
    )


@dataclass
class _Reloads:
    service: Service
    store: Path
    reloads: int
    seconds: list[float] = field(default_factory=list)
    published: int = 0
    rss: list[int] = field(default_factory=list)

    async def under_load(self, workload: Workload, concurrency: int) -> list[Outcome]:
        models = [m for m in (workload.models.sampler, workload.models.autoencoder) if m]
        done = asyncio.Event()
        load = asyncio.create_task(drive(self.service.url, workload.call, None, concurrency, done))
        try:
            await asyncio.sleep(1.0)
            self.rss.append(self.service.rss_bytes())
            for i in range(self.reloads):
                for name in models:
                    await self._reload(name, publish=i % 2 == 1)
            await asyncio.sleep(0.5)
            self.rss.append(self.service.rss_bytes())
        finally:
            done.set()
            outcomes = await load
        return outcomes

    async def _reload(self, name: str, publish: bool) -> None:
        if publish:
            await asyncio.to_thread(publish_next_version, self.store, name)
            self.published += 1
        path = f"/admin/models/{name}/reload"
        status, body = await asyncio.to_thread(self.service.post, path, None, ADMIN_TOKEN)
        if status != 200:
            raise RuntimeError(f"reload {name}: {status} {body}")
        self.seconds.append(body["seconds"])
        await asyncio.sleep(0.2)


@dataclass
class CorruptFigure:
    corruption: str
    model: str
    start_s: float
    ready_status: int
    reason: str
    others_serve: bool


def corrupt_startup(store: Path, corruption: str) -> CorruptFigure:
    """Break one model (the autoencoder, else the sampler's neighbour) ``corruption``'s way and
    start the service: it must start, say why in /health/ready, and serve the other models."""
    with tempfile.TemporaryDirectory() as tmp:
        store = copy_store(store, Path(tmp) / "store")
        names = [entry.name for entry in discover(store)]
        victim = next((n for n in names if n.startswith("vae")), names[0])
        CORRUPTIONS[corruption](store, victim)
        started = time.perf_counter()
        with serve(store) as service:
            start_s = time.perf_counter() - started
            status, ready = service.get("/health/ready")
            models = ready.get("models", {})
            others = [n for n, m in models.items() if n != victim and m["state"] == "ready"]
            others_serve = bool(others) and all(
                service.post("/sample", {"model": n})[0] == 200
                for n in others
                if "pixelcnn" not in n  # one PixelCNN sampling proves little and takes long
            )
    return CorruptFigure(
        corruption=corruption,
        model=victim,
        start_s=round(start_s, 2),
        ready_status=status,
        reason=str(models.get(victim, {}).get("reason")),
        others_serve=others_serve,
    )


@dataclass
class ShutdownFigure:
    requests: int
    in_flight: int
    """Requests not yet answered when SIGTERM was sent."""
    finished_ok: int
    exit_code: int
    exit_s: float
    problems: list[str]


def graceful_shutdown(store: Path, in_flight: int) -> ShutdownFigure:
    """Send ``in_flight`` slow requests (PixelCNN sampling if the store has one, else n=64),
    then SIGTERM once they are running: each must still come back whole."""
    with serve(store) as service:
        workload = Workload.prepare(service)
        models = workload.models
        shape = models.image_shape

        def slow(i: int) -> Call:
            if models.autoregressive:
                body = {"model": models.autoregressive, "n": 2, "seed": i}
                return Call("/sample", body, lambda r: _shape_and_pngs(r, 2, shape))
            body = {"model": models.sampler, "n": 64, "seed": i}
            return Call("/sample", body, lambda r: _shape_and_pngs(r, 64, shape))

        async def run() -> tuple[list[Outcome], float, int]:
            load = asyncio.create_task(drive(service.url, slow, in_flight, in_flight))
            await asyncio.sleep(0.2)
            started = time.perf_counter()
            service.process.send_signal(signal.SIGTERM)
            outcomes = await load
            code = await asyncio.to_thread(service.process.wait, 120)
            return outcomes, started, code

        outcomes, signalled, code = asyncio.run(run())
        exit_s = time.perf_counter() - signalled
    return ShutdownFigure(
        requests=len(outcomes),
        in_flight=sum(o.finished_at > signalled for o in outcomes),
        finished_ok=sum(o.ok for o in outcomes),
        exit_code=code,
        exit_s=round(exit_s, 2),
        problems=tally_problems(outcomes, lambda o: o.ok),
    )


def _shape_and_pngs(body: Json, n: int, shape: tuple[int, int, int]) -> str | None:
    if body.get("shape") != [n, *shape] or len(body.get("images", [])) != n:
        return f"shape {body.get('shape')}, {len(body.get('images', []))} images for n={n}"
    try:
        for text in body["images"]:
            decode_png(text, shape)
    except Exception as exc:
        return f"image does not decode: {exc}"
    return None


# ---------------------------------------------------------------- the command


@dataclass(frozen=True)
class Scale:
    examples: int
    soak_requests: int
    soak_warm_up: int
    overload_requests: int
    reloads: int
    corruptions: list[str]
    in_flight: int


FULL = Scale(100, 20_000, 5_000, 4_096, 10, list(CORRUPTIONS), 8)
QUICK = Scale(10, 2_000, 500, 1_024, 2, ["truncated graph", "card not JSON"], 8)
FIGURES = ["schemathesis", "soak", "overload", "reload", "corrupt", "shutdown"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("figures", nargs="*", help=f"some of {', '.join(FIGURES)} (all)")
    parser.add_argument("--quick", action="store_true", help="a short run of each figure")
    parser.add_argument("--store", type=Path, default=SHIPPED_STORE)
    parser.add_argument("--concurrency", type=int, default=64, help="soak and reload")
    parser.add_argument("--overload-concurrency", type=int, default=512)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.figures) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    scale = QUICK if args.quick else FULL
    store = args.store.resolve()
    results: dict[str, Any] = {}

    def report(name: str, figure: Any) -> None:
        results.setdefault(name, []).append(asdict(figure))
        print(f"{name}: " + json.dumps(asdict(figure)), flush=True)

    for name in args.figures or FIGURES:
        if name == "schemathesis":
            with serve(store, SERVICE_ADMIN_TOKEN=ADMIN_TOKEN) as service:
                report(name, schemathesis_figure(service, scale.examples))
        elif name == "soak":
            with serve(store) as service:
                report(
                    name, soak(service, scale.soak_requests, args.concurrency, scale.soak_warm_up)
                )
        elif name == "overload":
            report(name, overload(store, scale.overload_requests, args.overload_concurrency))
        elif name == "reload":
            report(name, hot_reload(store, scale.reloads, args.concurrency))
        elif name == "corrupt":
            for corruption in scale.corruptions:
                report(name, corrupt_startup(store, corruption))
        elif name == "shutdown":
            report(name, graceful_shutdown(store, scale.in_flight))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The reliability figures, each against a real ``python -m service`` on 127.0.0.1:
generated cases (schemathesis), a soak, overload, hot reload under load, corrupt-model start-up
and graceful shutdown. Every check that fails adds a line to its figure's ``problems``.
``bench/reliability.py`` runs them at full scale (docs/reliability.md);
tests/service/test_reliability.py runs small versions."""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from harness.live_service import (
    CheckedRequest,
    Json,
    Models,
    Outcome,
    Service,
    Workload,
    check_images,
    drive,
    find_models,
    gauge,
    histogram_p99,
    probe,
    serve,
    tally_problems,
    to_ms,
)
from harness.store_faults import CORRUPTIONS, copy_store, publish_next_version
from modelstore.discovery import discover

ADMIN_TOKEN = "reliability-bench-token"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
FIGURES = ["schemathesis", "soak", "schemathesis-key", "overload", "reload", "corrupt", "shutdown"]
"""Every figure, in the order ``bench/reliability.py`` runs them."""


def problems_of(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every problem of every figure's results, each ``figure: problem``."""
    return [f"{name}: {p}" for name, found in results.items() for f in found for p in f["problems"]]


# ---------------------------------------------------------------- the figures


@dataclass
class SchemathesisFigure:
    operations: int
    generated: int
    server_errors: int
    schema_breaks: int
    failures: list[str]
    seconds: float
    problems: list[str]


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


def schemathesis_figure(
    service: Service, examples: int, seed: int = 1, api_key: str | None = None
) -> SchemathesisFigure:
    """Run the schemathesis CLI on /openapi.json (one worker: hypothesis's parser is not
    thread-safe on Python 3.11). Serve with an admin token, and the admin routes are fuzzed
    without it (all 401): with it, a generated unload would take a model away from the run.
    ``api_key``: sent with every request, for a service with API keys on."""
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
        if api_key is not None:
            command += ["--header", f"Authorization: Bearer {api_key}"]
        started = time.perf_counter()
        # cwd: schemathesis and hypothesis keep caches in the working directory.
        run = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=reports)
        seconds = time.perf_counter() - started
        found = list(Path(reports).glob("*.json"))
        if not found:
            raise RuntimeError(f"schemathesis wrote no report:\n{run.stdout[-3000:]}{run.stderr}")
        report = json.loads(found[0].read_text())
    failures = report["failures"]
    found_failures = [f"{f['code']} {f['title']}: {', '.join(f['operations'])}" for f in failures]
    found_failures += [str(e) for e in report.get("errors", [])]
    problems = list(found_failures)
    if report["test_cases"]["generated"] == 0:
        problems.append("no case generated")
    return SchemathesisFigure(
        operations=report["operations"]["tested"],
        generated=report["test_cases"]["generated"],
        server_errors=sum(f["count"] for f in failures if f["code"] == SERVER_ERROR),
        schema_breaks=sum(f["count"] for f in failures if f["code"] != SERVER_ERROR),
        failures=found_failures,
        seconds=round(seconds, 1),
        problems=problems,
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
    pss_end_mib: float
    """The whole service's PSS after the soak, every model of the store having served."""
    pss_mib_by_process: dict[str, float]
    """The same by process (pid and command line): the supervisor, each worker, helpers."""
    models: int
    """Ready models, each probed in turn (``Workload``)."""
    problems: list[str]


SOAK_RSS_GROWTH_PCT = 5.0


def soak(
    service: Service,
    requests: int,
    concurrency: int,
    warm_up: int,
    rss_bound_pct: float | None = SOAK_RSS_GROWTH_PCT,
) -> SoakFigure:
    """``warm_up`` requests first (RSS is measured after them), then ``requests`` more, each one
    checked: status, shape, every PNG decodes, a seed renders as its reference does, and every
    ready model answers an operation of its family."""
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
    rss_end, pss_by_process = service.rss_bytes(), service.pss_by_process()
    latencies = [o.seconds for o in outcomes]
    growth = round(100 * (rss_end - rss_start) / rss_start, 2)
    problems = tally_problems(outcomes, lambda o: o.ok)
    if len(outcomes) != requests:
        problems.append(f"{len(outcomes)} requests answered of {requests}")
    problems += _unserved(workload, outcomes)
    if rss_bound_pct is not None and growth >= rss_bound_pct:
        problems.append(f"RSS grew {growth}% (at most {rss_bound_pct}%): {samples} MiB")
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
        rss_growth_pct=growth,
        rss_mib_every_tenth=samples,
        pss_end_mib=round(sum(pss_by_process.values()) / 2**20, 1),
        pss_mib_by_process={k: round(v / 2**20, 1) for k, v in pss_by_process.items()},
        models=len(workload.models.ready),
        problems=problems,
    )


def _shifted(call: Callable[[int], CheckedRequest], offset: int, i: int) -> CheckedRequest:
    return call(offset + i)


def _unserved(workload: Workload, outcomes: list[Outcome]) -> list[str]:
    """The ready models that no request of ``outcomes`` was served right by."""
    served = {o.model for o in outcomes if o.ok}
    return [
        f"{m['name']}: no request served" for m in workload.models.ready if m["name"] not in served
    ]


OVERLOAD_SETTINGS = {
    "SERVICE_BATCH_QUEUE_LIMIT": "8",
    "SERVICE_BATCH_MAX_SIZE": "64",
    "SERVICE_QUEUE_TIMEOUT_MS": "2000",
}
OVERLOAD_RSS_GROWTH_PCT = 5.0


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
    rss_cold_mib: float
    """Before any load: the warm-up's growth is the difference to ``rss_start_mib``."""
    rss_start_mib: float
    """After the warm-up."""
    rss_peak_mib: float
    """The most the service held while the load ran (sampled every 0.1 s)."""
    rss_end_mib: float
    rss_growth_pct: float
    """From before the load to once it ended."""
    recovery_ok: int
    recovery_requests: int
    recovery_first_ok_ms: float
    problems: list[str]


def overload(
    store: Path,
    requests: int,
    concurrency: int,
    recovery: int = 50,
    rss_bound_pct: float | None = OVERLOAD_RSS_GROWTH_PCT,
) -> OverloadFigure:
    """Far more concurrent requests than a small queue holds (OVERLOAD_SETTINGS), each sampling
    16 images, after a quarter as many of them to warm up (RSS is measured after those: the
    first large batches and the first 512 connections grow the allocators' pools once); then,
    load gone, ``recovery`` requests one at a time, over every ready model."""
    with serve(store, **OVERLOAD_SETTINGS) as service:
        workload = Workload.prepare(service)

        def heavy(i: int) -> CheckedRequest:
            body = {"model": workload.models.sampler, "n": 16, "seed": i}
            return CheckedRequest("/sample", body, lambda r: workload.check_sample(r, 16, None))

        rss_cold = service.rss_bytes()
        asyncio.run(drive(service.url, heavy, requests // 4, concurrency))
        rss_start = service.rss_bytes()
        outcomes, rss_peak = asyncio.run(
            _sampling_rss(service, drive(service.url, heavy, requests, concurrency))
        )
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
    problems = tally_problems(outcomes, lambda o: o.ok or o.refused)
    if not refused:
        problems.append("no request was refused: the load did not overload the queue")
    if not accepted:
        problems.append("no request was served under the load")
    problems += [f"after the load: {p}" for p in tally_problems(after, lambda o: o.ok)]
    growth = round(100 * (rss_end - rss_start) / rss_start, 2)
    if rss_bound_pct is not None and growth > rss_bound_pct:
        problems.append(f"RSS grew {growth}% (at most {rss_bound_pct}%)")
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
        rss_cold_mib=round(rss_cold / 2**20, 1),
        rss_start_mib=round(rss_start / 2**20, 1),
        rss_peak_mib=round(rss_peak / 2**20, 1),
        rss_end_mib=round(rss_end / 2**20, 1),
        rss_growth_pct=growth,
        recovery_ok=sum(o.ok for o in after),
        recovery_requests=len(after),
        recovery_first_ok_ms=round(first_ok_s * 1000, 1),
        problems=problems,
    )


async def _sampling_rss(
    service: Service, load: Coroutine[Any, Any, list[Outcome]]
) -> tuple[list[Outcome], int]:
    """``load``'s outcomes, and the service's largest RSS while it ran."""
    task = asyncio.ensure_future(load)
    peak = service.rss_bytes()
    while not task.done():
        await asyncio.wait([task], timeout=0.1)
        peak = max(peak, service.rss_bytes())
    return task.result(), peak


@dataclass
class ReloadFigure:
    reloads: int
    new_versions: int
    requests: int
    failed: int
    concurrency: int
    versions_served: dict[str, list[int]]
    """Per reloaded model: every version published must have served."""
    reload_p50_s: float
    reload_max_s: float
    rss_start_mib: float
    """Under load, before the first reload."""
    rss_end_mib: float
    """Under load, after the last: a version that is never freed shows here."""
    problems: list[str] = field(default_factory=list)


def hot_reload(store: Path, reloads: int, concurrency: int) -> ReloadFigure:
    """Load on every model while a generator, an autoencoder and an autoregressive model (those
    the store has) are each reloaded ``reloads`` times through /admin, every other time after a
    new version was published into the store."""
    with tempfile.TemporaryDirectory() as tmp:
        store = copy_store(store, Path(tmp) / "store")
        with serve(store, SERVICE_ADMIN_TOKEN=ADMIN_TOKEN) as service:
            workload = Workload.prepare(service)
            run = _Reloads(service, store, reloads, _reloaded(workload.models))
            outcomes = asyncio.run(run.under_load(workload, concurrency))
            _, listing = service.get("/models")
    problems = tally_problems(outcomes, lambda o: o.ok) + run.problems
    if not outcomes:
        problems.append("no request ran under the reloads")
    problems += _unserved(workload, outcomes)
    served = {
        name: sorted({o.version for o in outcomes if o.model == name and o.version is not None})
        for name in run.models
    }
    now = {m["name"]: m.get("version") for m in listing["models"]}
    for name, first in run.first_versions.items():
        expected = list(range(first, first + run.published_of[name] + 1))
        if served[name] != expected:
            problems.append(f"{name}: versions {served[name]} served, expected {expected}")
        if now.get(name) != expected[-1]:
            problems.append(f"{name}: /models says version {now.get(name)}, not {expected[-1]}")
    seconds = run.seconds or [float("nan")]
    return ReloadFigure(
        reloads=len(run.seconds),
        new_versions=sum(run.published_of.values()),
        requests=len(outcomes),
        failed=sum(not o.ok for o in outcomes),
        concurrency=concurrency,
        versions_served=served,
        reload_p50_s=round(statistics.median(seconds), 3),
        reload_max_s=round(max(seconds), 3),
        rss_start_mib=round(run.rss[0] / 2**20, 1),
        rss_end_mib=round(run.rss[-1] / 2**20, 1),
        problems=problems,
    )


def _reloaded(models: Models) -> list[str]:
    """One model of each kind the store has: the generator, the reconstructing model and an
    autoregressive one."""
    chosen = [models.sampler, models.autoencoder, *models.autoregressive[:1]]
    return list(dict.fromkeys(m for m in chosen if m))


@dataclass
class _Reloads:
    service: Service
    store: Path
    reloads: int
    models: list[str]
    seconds: list[float] = field(default_factory=list)
    published_of: dict[str, int] = field(default_factory=dict)
    first_versions: dict[str, int] = field(default_factory=dict)
    rss: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def under_load(self, workload: Workload, concurrency: int) -> list[Outcome]:
        by_name = {m["name"]: m for m in workload.models.ready}
        self.first_versions = {name: by_name[name]["version"] for name in self.models}
        self.published_of = dict.fromkeys(self.models, 0)
        done = asyncio.Event()
        load = asyncio.create_task(drive(self.service.url, workload.call, None, concurrency, done))
        try:
            await asyncio.sleep(1.0)
            self.rss.append(self.service.rss_bytes())
            for i in range(self.reloads):
                for name in self.models:
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
            self.published_of[name] += 1
        path = f"/admin/models/{name}/reload"
        status, body = await asyncio.to_thread(self.service.post, path, None, ADMIN_TOKEN)
        if status != 200:
            self.problems.append(f"reload {name}: HTTP {status} {body.get('error')}")
        else:
            self.seconds.append(body["seconds"])
        await asyncio.sleep(0.2)


@dataclass
class CorruptFigure:
    corruption: str
    model: str
    start_s: float
    """From the launch to /health/ready answering with every model loaded or failed."""
    ready_status: int
    reason: str
    others: int
    """The other models the service can serve; each must be ready and answer a probe."""
    others_serve: bool
    problems: list[str]


def corrupt_startup(store: Path, corruption: str) -> CorruptFigure:
    """Break one model (the VAE, else the store's first) ``corruption``'s way and start the
    service: it must start, be ready (readiness ``any``, the default: the other models serve),
    say why in /health/ready, and serve every other model (``probe``)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = copy_store(store, Path(tmp) / "store")
        names = [entry.name for entry in discover(store)]
        victim = next((n for n in names if n.startswith("vae")), names[0])
        CORRUPTIONS[corruption](store, victim)
        with serve(store) as service:
            status, ready = service.get("/health/ready")
            _, listing = service.get("/models")
            problems = []
            others = [m for m in listing["models"] if m["name"] != victim]
            others = [m for m in others if m["state"] != "unsupported"]
            for model in others:
                if model["state"] != "ready":
                    problems.append(f"{model['name']} is {model['state']}: {model.get('reason')}")
                    continue
                call = probe(model)
                answer, body = service.post(call.path, call.body)
                problem = call.check(body) if answer == 200 else f"HTTP {answer} {body}"
                if problem:
                    problems.append(f"{model['name']} {call.path}: {problem}")
            others_serve = bool(others) and not problems
    health = ready.get("models", {}).get(victim, {})
    reason = str(health.get("reason"))
    if status != 200:
        problems.append(f"/health/ready {status} with the other models serving: {ready}")
    if health.get("state") != "failed" or not reason.startswith(f"{victim}: "):
        problems.append(f"{victim} is {health.get('state')} in /health/ready, reason {reason}")
    if not others:
        problems.append("no other model to serve")
    return CorruptFigure(
        corruption=corruption,
        model=victim,
        start_s=round(service.ready_s, 2),
        ready_status=status,
        reason=reason,
        others=len(others),
        others_serve=others_serve,
        problems=problems,
    )


@dataclass
class ShutdownFigure:
    requests: int
    in_flight: int
    """Requests not yet answered when SIGTERM was sent."""
    finished_ok: int
    exit_code: int | None
    exit_s: float
    problems: list[str]


SHUTDOWN_SETTINGS = {"SERVICE_QUEUE_TIMEOUT_MS": "600000"}
"""The samplings wait their turn (one at a time, by default) however busy the machine: the
figure is about the drain at SIGTERM, not the queue's time-out."""


def graceful_shutdown(store: Path, in_flight: int) -> ShutdownFigure:
    """Send ``in_flight`` slow requests (n=1 samplings of the autoregressive models in turn, if
    the store has any, else n=64 of the generator), then SIGTERM once the service has taken
    them all: each must still come back whole, and the service exit cleanly."""
    with serve(store, **SHUTDOWN_SETTINGS) as service:
        models = find_models(service)
        shapes = {m["name"]: tuple(m["image_shape"]) for m in models.ready}

        answered = [0]

        def slow(i: int) -> CheckedRequest:
            if models.autoregressive:
                model = models.autoregressive[i % len(models.autoregressive)]
                body, n = {"model": model, "n": 1, "seed": i}, 1
            else:
                model = models.sampler
                body, n = {"model": model, "n": 64, "seed": i}, 64
            return CheckedRequest("/sample", body, partial(_counted, answered, n, shapes[model]))

        async def run() -> tuple[list[Outcome], float, int | None, bool]:
            load = asyncio.create_task(drive(service.url, slow, in_flight, in_flight))
            taken = await _until_taken(service, in_flight, answered, load)
            started = time.perf_counter()
            service.process.send_signal(signal.SIGTERM)
            outcomes = await load
            try:
                code = await asyncio.to_thread(service.process.wait, 120)
            except subprocess.TimeoutExpired:
                code = None
            return outcomes, started, code, taken

        outcomes, signalled, code, taken = asyncio.run(run())
        exit_s = time.perf_counter() - signalled
    late = sum(o.finished_at > signalled for o in outcomes)
    problems = tally_problems(outcomes, lambda o: o.ok)
    if not taken:
        problems.append(f"the service did not take all {in_flight} requests before SIGTERM")
    if late == 0:
        problems.append("every request had finished before SIGTERM")
    # One process re-raises SIGTERM once it has drained; several workers' supervisor exits 0.
    if code not in (0, -signal.SIGTERM):
        problems.append(f"exit status {code} after SIGTERM")
    return ShutdownFigure(
        requests=len(outcomes),
        in_flight=late,
        finished_ok=sum(o.ok for o in outcomes),
        exit_code=code,
        exit_s=round(exit_s, 2),
        problems=problems,
    )


def _counted(answered: list[int], n: int, shape: tuple[int, ...], body: Json) -> str | None:
    answered[0] += 1
    return check_images(body, n, shape)


async def _until_taken(
    service: Service, count: int, answered: list[int], load: asyncio.Task[Any]
) -> bool:
    """Wait until the service has taken all ``count`` requests: those in flight (/metrics,
    which counts itself too) and those answered make ``count``; up to 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not load.done():
        in_flight = await asyncio.to_thread(gauge, service, "genserve_requests_in_flight")
        if in_flight - 1 + answered[0] >= count:
            return True
        await asyncio.sleep(0.05)
    return False

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
import base64
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from service.store import card_file, discover, graph_file  # noqa: E402

SHIPPED_STORE = REPO / "model_store"
ADMIN_TOKEN = "reliability-bench-token"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
REFERENCE_SEEDS = 32
PIXEL_TOLERANCE = 2
"""Gray levels two renderings of one seed may differ by (batched runs round differently)."""

Json = dict[str, Any]


# ---------------------------------------------------------------- the service, for real


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def rss_bytes(self) -> int:
        """Resident memory of the server process, from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def get(self, path: str, token: str | None = None) -> tuple[int, Json]:
        return _http("GET", self.url + path, None, token)

    def post(
        self, path: str, body: Json | None = None, token: str | None = None
    ) -> tuple[int, Json]:
        return _http("POST", self.url + path, body, token)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def _http(method: str, url: str, body: Json | None, token: str | None) -> tuple[int, Json]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(store: Path, start_s: float = 120, **settings: str) -> Iterator[Service]:
    """``python -m service`` on 127.0.0.1 serving ``store``, once /health/live answers.
    ``settings`` are environment variables (``SERVICE_BATCH_QUEUE_LIMIT="8"``)."""
    port = free_port()
    env = {**os.environ, "SERVICE_MODEL_STORE": str(store), "SERVICE_DEVICE": "cpu", **settings}
    log_dir = Path(tempfile.mkdtemp(prefix="genserve-reliability-"))
    log = log_dir / "service.log"
    command = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--log-level", "warning"], cwd=REPO, env=env, stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    service = Service(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + start_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited at start-up:\n{service.log_tail()}")
            try:
                if service.get("/health/live")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not live within {start_s} s:\n{service.log_tail()}")
            time.sleep(0.1)
        yield service
    finally:
        stop(process)
        shutil.rmtree(log_dir, ignore_errors=True)


def stop(process: subprocess.Popen[bytes], wait_s: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


# ---------------------------------------------------------------- the store


def copy_store(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def newest_card(store: Path, name: str) -> Path:
    entries = {entry.name: entry for entry in discover(store)}
    path = entries[name].card_path
    if path is None:
        raise RuntimeError(f"{name}: {entries[name].problem}")
    return path


def publish_next_version(store: Path, name: str) -> int:
    """Copy the newest version of ``name`` as the next one, graphs first and the card last,
    as an export would: a watcher never sees a card before its files."""
    card = json.loads(newest_card(store, name).read_text())
    version = card["version"] + 1
    for role, graph in card["graphs"].items():
        target = graph_file(name, role, version)
        (store / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store / graph["file"], store / target)
        card["files"][target] = card["files"].pop(graph["file"])
        graph["file"] = target
    card["version"] = version
    (store / card_file(name, version)).write_text(json.dumps(card, indent=2))
    return version


def _rewrite_graph(store: Path, name: str, damage: Callable[[bytes], bytes], sign: bool) -> str:
    """Damage the first graph of ``name``; ``sign``: record the damaged file's sha256 in the
    card, so that it passes the checksum and reaches onnxruntime."""
    card_path = newest_card(store, name)
    card = json.loads(card_path.read_text())
    file = next(iter(card["graphs"].values()))["file"]
    data = damage((store / file).read_bytes())
    (store / file).write_bytes(data)
    if sign:
        card["files"][file] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        card_path.write_text(json.dumps(card, indent=2))
    return file


def _rewrite_card(store: Path, name: str, text: bytes) -> None:
    newest_card(store, name).write_bytes(text)


def _card_without_graphs(store: Path, name: str) -> bytes:
    card = json.loads(newest_card(store, name).read_text())
    del card["graphs"]
    return json.dumps(card).encode()


CORRUPTIONS: dict[str, Callable[[Path, str], object]] = {
    "truncated graph": lambda s, n: _rewrite_graph(s, n, lambda b: b[: len(b) // 2], sign=True),
    "garbage graph": lambda s, n: _rewrite_graph(
        s, n, lambda b: np.random.default_rng(0).bytes(len(b)), sign=True
    ),
    "checksum mismatch": lambda s, n: _rewrite_graph(
        s, n, lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), sign=False
    ),
    "card not JSON": lambda s, n: _rewrite_card(s, n, b'{"name": '),
    "card not UTF-8": lambda s, n: _rewrite_card(s, n, b"\xff\xfe\x00garbage"),
    "card breaks the schema": lambda s, n: _rewrite_card(s, n, _card_without_graphs(s, n)),
}


# ---------------------------------------------------------------- the workload and its checks


@dataclass(frozen=True)
class Models:
    sampler: str
    """A ready model that samples in one run (a GAN or VAE decoder)."""
    autoencoder: str | None
    """A ready model that reconstructs (encoder then decoder), if any."""
    autoregressive: str | None
    image_shape: tuple[int, int, int]


def find_models(service: Service) -> Models:
    _, listing = service.get("/models")
    ready = [m for m in listing["models"] if m["state"] == "ready"]
    samplers = [m for m in ready if "sample" in m["operations"] and m["family"] != "pixelcnn"]
    if not samplers:
        raise RuntimeError(f"no ready model samples in one run: {listing}")
    autoencoders = [m["name"] for m in ready if "reconstruct" in m["operations"]]
    autoregressive = [m["name"] for m in ready if m["family"] == "pixelcnn"]
    sampler = next((m for m in samplers if m["family"] in ("dcgan", "gan")), samplers[0])
    return Models(
        sampler["name"],
        autoencoders[0] if autoencoders else None,
        autoregressive[0] if autoregressive else None,
        tuple(sampler["image_shape"]),
    )


def decode_png(text: str, shape: tuple[int, int, int]) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(text, validate=True)))
    image.load()
    _, h, w = shape
    if image.size != (w, h) or image.mode != "L":
        raise ValueError(f"PNG is {image.mode} {image.size}, expected L {(w, h)}")
    return np.asarray(image, dtype=np.int16)


@dataclass(frozen=True)
class Call:
    path: str
    body: Json
    check: Callable[[Json], str | None]
    """None when the 200 body is whole and right, else what is wrong."""


class Workload:
    """Requests in rotation: sampler n=1 by seed (compared with a reference rendering of that
    seed), sampler n=4, and reconstruct on the autoencoder; every image is decoded."""

    def __init__(self, models: Models, references: dict[int, np.ndarray]) -> None:
        self.models, self.references = models, references
        self.reconstruct_input = _png(np.full(models.image_shape[1:], 128, np.uint8))

    @classmethod
    def prepare(cls, service: Service) -> Workload:
        models = find_models(service)
        references = {}
        for seed in range(REFERENCE_SEEDS):
            status, body = service.post("/sample", {"model": models.sampler, "seed": seed})
            if status != 200:
                raise RuntimeError(f"reference sample for seed {seed}: {status} {body}")
            references[seed] = decode_png(body["images"][0], models.image_shape)
        return cls(models, references)

    def call(self, i: int) -> Call:
        kind = i % 4
        if kind in (0, 1):
            seed = i % REFERENCE_SEEDS
            body = {"model": self.models.sampler, "seed": seed}
            return Call("/sample", body, lambda r: self._check_sample(r, 1, seed))
        if kind == 2 or self.models.autoencoder is None:
            body = {"model": self.models.sampler, "n": 4, "seed": i}
            return Call("/sample", body, lambda r: self._check_sample(r, 4, None))
        body = {"model": self.models.autoencoder, "images": [self.reconstruct_input]}
        return Call("/reconstruct", body, self._check_reconstruct)

    def _check_sample(self, body: Json, n: int, seed: int | None) -> str | None:
        if body.get("shape") != [n, *self.models.image_shape]:
            return f"shape {body.get('shape')} for n={n}"
        if seed is not None and body.get("seed") != seed:
            return f"seed {body.get('seed')} came back for seed {seed}"
        problem = self._check_images(body, n)
        if problem is None and seed is not None:
            image = decode_png(body["images"][0], self.models.image_shape)
            diff = int(np.abs(image - self.references[seed]).max())
            if diff > PIXEL_TOLERANCE:
                return f"seed {seed}: image differs from its reference by {diff} gray levels"
        return problem

    def _check_reconstruct(self, body: Json) -> str | None:
        if len(body.get("error", [])) != 1:
            return f"{len(body.get('error', []))} errors for 1 image"
        return self._check_images(body, 1)

    def _check_images(self, body: Json, n: int) -> str | None:
        images = body.get("images", [])
        if len(images) != n:
            return f"{len(images)} images, expected {n}"
        try:
            for text in images:
                decode_png(text, self.models.image_shape)
        except Exception as exc:
            return f"image does not decode: {exc}"
        return None


def _png(pixels: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


# ---------------------------------------------------------------- the load generator


@dataclass
class Outcome:
    status: int
    """0: no HTTP answer (connection error, time-out)."""
    seconds: float
    problem: str | None = None
    code: str | None = None
    retry_after: str | None = None
    version: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.problem is None

    @property
    def refused(self) -> bool:
        """503 overloaded with a Retry-After: the service said no, quickly and properly."""
        return self.status == 503 and self.code == "overloaded" and bool(self.retry_after)


async def drive(
    url: str,
    calls: Callable[[int], Call],
    total: int | None,
    concurrency: int,
    until: asyncio.Event | None = None,
    timeout_s: float = 120,
) -> list[Outcome]:
    """``total`` requests (or until ``until`` is set) over ``concurrency`` connections."""
    outcomes: list[Outcome] = []
    issued = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal issued
            while (total is None or issued < total) and not (until and until.is_set()):
                call = calls(issued)
                issued += 1
                outcomes.append(await _one(session, url, call))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


async def _one(session: aiohttp.ClientSession, url: str, call: Call) -> Outcome:
    started = time.perf_counter()
    try:
        async with session.post(url + call.path, json=call.body) as response:
            raw = await response.read()
            seconds = time.perf_counter() - started
            status = response.status
            retry_after = response.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Outcome(0, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    try:
        body = json.loads(raw)
    except ValueError:
        return Outcome(status, seconds, "body is not JSON")
    if status != 200:
        problem = None if status == 503 else f"HTTP {status}: {body.get('error')}"
        return Outcome(status, seconds, problem, body.get("code"), retry_after)
    return Outcome(status, seconds, call.check(body), version=body.get("version"))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _ms(values: list[float], q: float) -> float:
    return round(percentile(values, q) * 1000, 1)


def _problems(outcomes: list[Outcome], keep: Callable[[Outcome], bool]) -> list[str]:
    found = Counter(o.problem or f"HTTP {o.status} {o.code}" for o in outcomes if not keep(o))
    return [f"{count} x {problem}" for problem, count in found.most_common(5)]


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
    """Run the schemathesis CLI on /openapi.json. The admin routes are fuzzed without the token
    (all 401): with it, a generated unload would take a model away from the rest of the run."""
    with tempfile.TemporaryDirectory() as reports:
        command = [
            str(SCHEMATHESIS), "run", f"{service.url}/openapi.json", "--checks", ",".join(CHECKS),
            "--max-examples", str(examples), "--seed", str(seed), "--workers", "2",
            "--report", "json", "--report-dir", reports, "--request-timeout", "60",
        ]  # fmt: skip
        started = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True, timeout=1800)
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
    problems: list[str]


def soak(service: Service, requests: int, concurrency: int, warm_up: int) -> SoakFigure:
    """``warm_up`` requests first (RSS is measured after them), then ``requests`` more, each one
    checked: status, shape, every PNG decodes, and a seed renders as its reference does."""
    workload = Workload.prepare(service)
    asyncio.run(drive(service.url, workload.call, warm_up, concurrency))
    rss_start = service.rss_bytes()
    started = time.perf_counter()
    outcomes = asyncio.run(drive(service.url, workload.call, requests, concurrency))
    seconds = time.perf_counter() - started
    rss_end = service.rss_bytes()
    latencies = [o.seconds for o in outcomes]
    return SoakFigure(
        requests=len(outcomes),
        concurrency=concurrency,
        errors=sum(o.status != 200 for o in outcomes),
        integrity_failures=sum(o.status == 200 and o.problem is not None for o in outcomes),
        requests_per_s=round(len(outcomes) / seconds, 1),
        p50_ms=_ms(latencies, 50),
        p99_ms=_ms(latencies, 99),
        rss_start_mib=round(rss_start / 2**20, 1),
        rss_end_mib=round(rss_end / 2**20, 1),
        rss_growth_pct=round(100 * (rss_end - rss_start) / rss_start, 2),
        problems=_problems(outcomes, lambda o: o.ok),
    )


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
    accepted_p99_ms: float
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
            return Call("/sample", body, lambda r: workload._check_sample(r, 16, None))

        outcomes = asyncio.run(drive(service.url, heavy, requests, concurrency))
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
        rejection_p50_ms=_ms([o.seconds for o in refused], 50),
        rejection_p99_ms=_ms([o.seconds for o in refused], 99),
        accepted_p99_ms=_ms([o.seconds for o in accepted], 99),
        recovery_ok=sum(o.ok for o in after),
        recovery_requests=len(after),
        recovery_first_ok_ms=round(first_ok_s * 1000, 1),
        problems=_problems(outcomes + after, lambda o: o.ok or o.refused),
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
    rss_end_mib: float
    problems: list[str] = field(default_factory=list)


def hot_reload(store: Path, reloads: int, concurrency: int) -> ReloadFigure:
    """Load on both models while each is reloaded ``reloads`` times through /admin, every
    other time after a new version was published into the store."""
    with tempfile.TemporaryDirectory() as tmp:
        store = copy_store(store, Path(tmp) / "store")
        with serve(store, SERVICE_ADMIN_TOKEN=ADMIN_TOKEN) as service:
            workload = Workload.prepare(service)
            models = [m for m in (workload.models.sampler, workload.models.autoencoder) if m]
            rss_start = service.rss_bytes()
            seconds, published, answers = asyncio.run(
                _reload_under_load(service, workload, models, store, reloads, concurrency)
            )
            rss_end = service.rss_bytes()
    outcomes, refused = answers
    return ReloadFigure(
        reloads=len(seconds),
        new_versions=published,
        requests=len(outcomes),
        failed=sum(not o.ok for o in outcomes) + refused,
        concurrency=concurrency,
        versions_served=sorted({o.version for o in outcomes if o.version is not None}),
        reload_p50_s=round(statistics.median(seconds), 3) if seconds else float("nan"),
        reload_max_s=round(max(seconds, default=float("nan")), 3),
        rss_start_mib=round(rss_start / 2**20, 1),
        rss_end_mib=round(rss_end / 2**20, 1),
        problems=_problems(outcomes, lambda o: o.ok),
    )


async def _reload_under_load(
    service: Service,
    workload: Workload,
    models: list[str],
    store: Path,
    reloads: int,
    concurrency: int,
) -> tuple[list[float], int, tuple[list[Outcome], int]]:
    done = asyncio.Event()
    load = asyncio.create_task(drive(service.url, workload.call, None, concurrency, done))
    seconds, published, refused = [], 0, 0
    try:
        await asyncio.sleep(0.5)
        for i in range(reloads):
            for name in models:
                if i % 2 == 1:
                    await asyncio.to_thread(publish_next_version, store, name)
                    published += 1
                path = f"/admin/models/{name}/reload"
                status, body = await asyncio.to_thread(service.post, path, None, ADMIN_TOKEN)
                if status != 200:
                    refused += 1
                    raise RuntimeError(f"reload {name}: {status} {body}")
                seconds.append(body["seconds"])
                await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
    finally:
        done.set()
        outcomes = await load
    return seconds, published, (outcomes, refused)


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
    in_flight: int
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
            await asyncio.sleep(0.5)
            started = time.perf_counter()
            service.process.send_signal(signal.SIGTERM)
            outcomes = await load
            code = await asyncio.to_thread(service.process.wait, 120)
            return outcomes, time.perf_counter() - started, code

        outcomes, exit_s, code = asyncio.run(run())
    return ShutdownFigure(
        in_flight=len(outcomes),
        finished_ok=sum(o.ok for o in outcomes),
        exit_code=code,
        exit_s=round(exit_s, 2),
        problems=_problems(outcomes, lambda o: o.ok),
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


FULL = Scale(100, 20_000, 2_000, 4_096, 10, list(CORRUPTIONS), 8)
QUICK = Scale(10, 2_000, 500, 1_024, 2, ["truncated graph", "card not JSON"], 4)
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
            with serve(store) as service:
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

"""A real ``python -m service`` on 127.0.0.1, a load generator that checks every answer, and
the workload it sends (bench/reliability.py and tests/service/test_reliability.py use them)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
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
    ready_s: float = float("nan")
    """From the launch to the first answer that the service is up with the store loaded."""

    def rss_bytes(self) -> int:
        """Resident memory of the service: the process and every one below it (the workers,
        when there are several), from /proc."""
        return sum(rss_of_tree(self.process.pid).values())

    def pss_by_process(self) -> dict[str, int]:
        """Proportional memory in bytes of the same processes, by ``pid command line``: pages
        they share (the mapped libraries, a forked parent's) are counted once in all, not once
        per process."""
        found = {}
        for pid in rss_of_tree(self.process.pid):
            proc = Path(f"/proc/{pid}")
            try:
                rollup = (proc / "smaps_rollup").read_text()
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            pss = next((line for line in rollup.splitlines() if line.startswith("Pss:")), None)
            if pss is not None:  # None: it exited meanwhile
                found[f"{pid} {command[:120]}"] = int(pss.split()[1]) * 1024
        return found

    def get(self, path: str, token: str | None = None) -> tuple[int, Json]:
        return _http("GET", self.url + path, None, token)

    def post(
        self, path: str, body: Json | None = None, token: str | None = None
    ) -> tuple[int, Json]:
        return _http("POST", self.url + path, body, token)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def rss_of_tree(pid: int) -> dict[int, int]:
    """VmRSS in bytes of ``pid`` and its descendants; a process that exits meanwhile is left
    out."""
    found: dict[int, int] = {}
    todo = [pid]
    while todo:
        proc = Path(f"/proc/{todo.pop()}")
        try:
            status = (proc / "status").read_text()
            children = [(task / "children").read_text() for task in (proc / "task").iterdir()]
        except OSError:
            continue
        todo += [int(child) for text in children for child in text.split()]
        for line in status.splitlines():
            if line.startswith("VmRSS:"):  # a zombie has none
                found[int(proc.name)] = int(line.split()[1]) * 1024
    return found


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
    """``python -m service`` on 127.0.0.1 serving ``store``, once every worker has started (all
    are live and have loaded the store: /health/ready no longer says some are starting).
    ``settings`` are environment variables (``SERVICE_BATCH_QUEUE_LIMIT="8"``)."""
    port = free_port()
    env = {**os.environ, "SERVICE_MODEL_STORE": str(store), "SERVICE_DEVICE": "cpu", **settings}
    log_dir = Path(tempfile.mkdtemp(prefix="genserve-reliability-"))
    log = log_dir / "service.log"
    command = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        launched = time.perf_counter()
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
                status, body = service.get("/health/ready")
                if status == 200 or "workers have started" not in str(body.get("error", "")):
                    service.ready_s = time.perf_counter() - launched
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not live within {start_s} s:\n{service.log_tail()}")
            time.sleep(0.05)
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


# ---------------------------------------------------------------- the workload and its checks


@dataclass(frozen=True)
class Models:
    sampler: str
    """A ready model that samples in one run (a GAN or VAE decoder)."""
    autoencoder: str | None
    """A ready model that reconstructs (encoder then decoder), if any."""
    autoregressive: tuple[str, ...]
    """The ready autoregressive models (pixelcnn, pixelrnn): they sample pixel by pixel."""
    image_shape: tuple[int, int, int]
    ready: tuple[Json, ...]
    """Every ready model as ``GET /models`` lists it (its family's operations among them)."""


def find_models(service: Service) -> Models:
    _, listing = service.get("/models")
    ready = [m for m in listing["models"] if m["state"] == "ready"]
    samplers = [m for m in ready if _one_run_sampler(m)]
    if not samplers:
        raise RuntimeError(f"no ready model samples in one run: {listing}")
    autoencoders = [m["name"] for m in ready if "reconstruct" in m["operations"]]
    sampler = next((m for m in samplers if m["family"] in ("dcgan", "gan")), samplers[0])
    return Models(
        sampler["name"],
        autoencoders[0] if autoencoders else None,
        tuple(m["name"] for m in ready if _autoregressive(m)),
        tuple(sampler["image_shape"]),
        tuple(ready),
    )


def _autoregressive(model: Json) -> bool:
    """/models describes how an autoregressive model samples, and only such a model."""
    return model.get("sampling") is not None


def _one_run_sampler(model: Json) -> bool:
    return "sample" in model["operations"] and not _autoregressive(model)


def probe(model: Json, seed: int = 0) -> CheckedRequest:
    """A quick request for ``model`` (as ``GET /models`` lists it) of an operation its family
    supports, and the check of its answer: n=2 samples from a generator, the reconstruction of
    one image from an autoencoder, the exact likelihood of one image from an autoregressive
    model (its sampling takes a second or so)."""
    name, operations = model["name"], model["operations"]
    shape = tuple(model["image_shape"])
    if _one_run_sampler(model):
        body = {"model": name, "n": 2, "seed": seed}
        return CheckedRequest("/sample", body, partial(check_images, n=2, shape=shape, model=model))
    image = _png(np.full(shape[1:], 128, np.uint8))
    if "reconstruct" in operations:
        body = {"model": name, "images": [image]}
        return CheckedRequest("/reconstruct", body, partial(_check_reconstruct, shape=shape))
    if "score" in operations:
        return CheckedRequest("/score", {"model": name, "images": [image]}, _check_score)
    raise ValueError(f"{name}: no quick operation among {operations}")


def check_images(
    body: Json, n: int, shape: tuple[int, ...], model: Json | None = None
) -> str | None:
    """``n`` whole images of ``shape``: the shape said, the PNGs decoded, and one class per
    image from a conditional model."""
    if "shape" in body and body["shape"] != [n, *shape]:
        return f"shape {body['shape']} for n={n}"
    images = body.get("images", [])
    if len(images) != n:
        return f"{len(images)} images, expected {n}"
    try:
        for text in images:
            decode_png(text, shape)
    except Exception as exc:
        return f"image does not decode: {exc}"
    if model is not None and model.get("conditional"):
        labels = body.get("labels") or []
        if len(labels) != n or not set(labels) <= set(model.get("class_names") or []):
            return f"labels {labels} for n={n} from a conditional model"
    return None


def _check_reconstruct(body: Json, shape: tuple[int, ...]) -> str | None:
    errors = body.get("error", [])
    if len(errors) != 1 or not all(np.isfinite(e) and e >= 0 for e in errors):
        return f"reconstruction errors {errors} for 1 image"
    return check_images(body, 1, shape)


def _check_score(body: Json) -> str | None:
    bits = body.get("bits_per_dim", [])
    if len(bits) != 1 or not all(np.isfinite(b) and b > 0 for b in bits):
        return f"bits per dim {bits} for 1 image"
    return None


def decode_png(text: str, shape: tuple[int, ...]) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(text, validate=True)))
    image.load()
    c, h, w = shape
    mode = "L" if c == 1 else "RGB"
    if image.size != (w, h) or image.mode != mode:
        raise ValueError(f"PNG is {image.mode} {image.size}, expected {mode} {(w, h)}")
    return np.asarray(image, dtype=np.int16)


@dataclass(frozen=True)
class CheckedRequest:
    """A POST to send: its path, its JSON body, and the check of its answer."""

    path: str
    body: Json
    check: Callable[[Json], str | None]
    """None when the 200 body is whole and right, else what is wrong."""


class Workload:
    """Requests in rotation: the sampler n=1 by seed (compared with a reference rendering of
    that seed), the sampler n=4, and a probe of every ready model in turn (``probe``: an
    operation its family supports); every image is decoded."""

    def __init__(self, models: Models, references: dict[int, np.ndarray]) -> None:
        self.models, self.references = models, references
        self.probes = [probe(m) for m in models.ready]

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

    def call(self, i: int) -> CheckedRequest:
        kind = i % 4
        if kind in (0, 1):
            seed = i % REFERENCE_SEEDS
            body = {"model": self.models.sampler, "seed": seed}
            return CheckedRequest("/sample", body, lambda r: self.check_sample(r, 1, seed))
        if kind == 2:
            body = {"model": self.models.sampler, "n": 4, "seed": i}
            return CheckedRequest("/sample", body, lambda r: self.check_sample(r, 4, None))
        return self.probes[i // 4 % len(self.probes)]

    def check_sample(self, body: Json, n: int, seed: int | None) -> str | None:
        if body.get("shape") != [n, *self.models.image_shape]:
            return f"shape {body.get('shape')} for n={n}"
        if seed is not None and body.get("seed") != seed:
            return f"seed {body.get('seed')} came back for seed {seed}"
        problem = check_images(body, n, self.models.image_shape)
        if problem is None and seed is not None:
            image = decode_png(body["images"][0], self.models.image_shape)
            diff = int(np.abs(image - self.references[seed]).max())
            if diff > PIXEL_TOLERANCE:
                return f"seed {seed}: image differs from its reference by {diff} gray levels"
        return problem


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
    finished_at: float = field(default_factory=time.perf_counter)
    model: str | None = None
    """The model the request named."""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.problem is None

    @property
    def refused(self) -> bool:
        """503 overloaded with a Retry-After: the service said no, quickly and properly."""
        return self.status == 503 and self.code == "overloaded" and bool(self.retry_after)


async def drive(
    url: str,
    calls: Callable[[int], CheckedRequest],
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
                outcome = await _one(session, url, call)
                outcome.model = call.body.get("model")
                outcomes.append(outcome)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


async def _one(session: aiohttp.ClientSession, url: str, call: CheckedRequest) -> Outcome:
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


def timed(call: Callable[[], object]) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def to_ms(values: list[float], q: float) -> float:
    return round(percentile(values, q) * 1000, 1)


def tally_problems(outcomes: list[Outcome], keep: Callable[[Outcome], bool]) -> list[str]:
    found = Counter(o.problem or f"HTTP {o.status} {o.code}" for o in outcomes if not keep(o))
    return [f"{count} x {problem}" for problem, count in found.most_common(5)]


def metrics_text(service: Service) -> str:
    """The service's /metrics, in the Prometheus text format."""
    with urllib.request.urlopen(service.url + "/metrics", timeout=30) as response:
        return str(response.read().decode())


def gauge(service: Service, metric: str) -> float:
    """The value of an unlabelled ``metric`` in /metrics (summed over the workers)."""
    for line in metrics_text(service).splitlines():
        if line.startswith(metric + " "):
            return float(line.split()[1])
    raise RuntimeError(f"no {metric} in /metrics")


def histogram_p99(service: Service, metric: str, status: str) -> float:
    """The upper bound of the bucket that holds the 99th percentile of ``metric`` for responses
    with ``status``, summed over every other label, from /metrics."""
    text = metrics_text(service)
    buckets: Counter[float] = Counter()
    for line in text.splitlines():
        if line.startswith(metric + "_bucket{") and f'status="{status}"' in line:
            labels, value = line.rsplit(" ", 1)
            bound = labels.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] += float(value)
    if not buckets or buckets[float("inf")] == 0:
        return float("nan")
    total = buckets[float("inf")]
    return next(bound for bound in sorted(buckets) if buckets[bound] >= 0.99 * total)

"""The servers the bench measures: how to start each one, when it is ready, how to ask it for
images and read its pixels back, its memory, and how to stop it together with every process it
started. A server is one variant of a family (the same server in another configuration)."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench.peers import workload
from harness.live_service import Service, rss_of_tree

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS = BENCH / "peers"
PYTRITON_VENV = REPO / ".venv-pytriton"
SEED = 7


@dataclass(frozen=True)
class PeerBatching:
    max_batch_size: int = 64
    """Requests per batch (each request brings n images)."""
    timeout_us: int = 1000
    """How long a peer holds a batch open for more requests (Mosec rounds up to 1 ms)."""

    def args(self) -> list[str]:
        size, timeout = str(self.max_batch_size), str(self.timeout_us)
        return ["--max-batch-size", size, "--batch-timeout-us", timeout]


@dataclass(frozen=True)
class Request:
    path: str
    body: dict[str, Any] | bytes
    """A JSON body (sent as application/json), or raw bytes sent as they are."""
    headers: dict[str, str] = field(default_factory=dict)
    """Sent besides Content-Length (and Content-Type for a JSON body)."""
    pace_ms: float = 0  # a load's pause before each request on a connection

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        if isinstance(self.body, bytes):
            return self.body, dict(self.headers)
        return json.dumps(self.body).encode(), {"Content-Type": "application/json", **self.headers}


@dataclass(frozen=True)
class ServerSpec:
    name: str
    about: str
    family: str
    """The server this is a variant of: the same server in another configuration."""
    program: list[str]
    """Its command but for the ports, the store and the batching: interpreter, script or module,
    and its own options."""
    ready_paths: list[str]
    request: Callable[[str, int, Path], Request]
    """(model, images per request, store) -> the request for that many images of SEED."""
    pixels: Callable[[httpx.Response], np.ndarray]
    """A reply's images as 8-bit pixels, (N, H, W)."""
    port_flags: tuple[str, ...] = ("--port",)
    batched: bool = False
    """It takes the peers' batching options (PeerBatching)."""
    needs: tuple[str, ...] = ()
    """The modules it needs in this environment."""
    env: Callable[[], dict[str, str]] = dict
    stop_grace_s: float = 5.0
    """How long the stop signal has before SIGKILL."""
    stop_signal: signal.Signals = signal.SIGTERM
    leftovers: Callable[[int], list[Path]] = lambda pid: []
    """Files that a server with this process id leaves behind when it is killed."""
    stops_its_children: bool = False
    """The stop signal goes to its own process only, which shuts its children down in order."""

    def command(self, ports: list[int], store: Path, batching: PeerBatching) -> list[str]:
        pairs = zip(self.port_flags, ports, strict=True)
        own = [arg for flag, port in pairs for arg in (flag, str(port))]
        if self.family != "service":  # the service reads SERVICE_MODEL_STORE
            own += ["--store", str(store)]
        return [*self.program, *own, *(batching.args() if self.batched else [])]

    def missing(self) -> str | None:
        """Why the server cannot run here (not installed), or None."""
        if self.family == "pytriton" and not (PYTRITON_VENV / "bin" / "python").is_file():
            return f"{PYTRITON_VENV.name} is missing; run make bench-throughput"
        absent = [m for m in self.needs if find_spec(m) is None]
        return f"not installed ({', '.join(absent)}); run make bench-throughput" if absent else None


def to_pixels(images: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) floats in [0, 1] -> (N, H, W) 8-bit pixels, rounded as the PNGs are."""
    return np.round(np.clip(images[:, 0], 0.0, 1.0) * 255).astype(np.uint8)


def _sample_body(model: str, n: int, store: Path) -> Request:
    return Request("/sample", {"model": model, "n": n, "seed": SEED})


def _per_model_route(model: str, n: int, store: Path) -> Request:
    return Request(f"/sample/{model}", {"n": n, "seed": SEED})


def _kserve_v2(model: str, n: int, store: Path) -> Request:
    inputs = [
        {"name": "seed", "shape": [1, 1], "datatype": "INT64", "data": [SEED]},
        {"name": "n", "shape": [1, 1], "datatype": "INT32", "data": [n]},
    ]
    return Request(f"/v2/models/{model}/infer", {"inputs": inputs})


def _kserve_v2_binary(model: str, n: int, store: Path) -> Request:
    """The service's graph from z to image, asked by tritonclient's own request body: z, the
    latents /sample draws for SEED and n, as binary tensor data after the JSON header, and the
    image asked for as binary data too."""
    from tritonclient import http

    z = workload.latents(SEED, n, workload.graph_file(model, store).latent_dim)
    tensor = http.InferInput("z", list(z.shape), "FP32")
    tensor.set_data_from_numpy(z, binary_data=True)
    image = http.InferRequestedOutput("image", binary_data=True)
    body, length = http.InferenceServerClient.generate_request_body([tensor], outputs=[image])
    headers = {"Content-Type": "application/octet-stream"}
    headers["Inference-Header-Content-Length"] = str(length)
    return Request(f"/v2/models/{model}.{workload.GRAPH_ROLES[model]}/infer", body, headers)


def _png_pixels(images: list[str]) -> np.ndarray:
    decoded = [Image.open(io.BytesIO(base64.b64decode(i))).convert("L") for i in images]
    return np.stack([np.asarray(image) for image in decoded])


def _images_field(reply: httpx.Response) -> np.ndarray:
    return _png_pixels(list(reply.json()["images"]))


def _kserve_images(reply: httpx.Response) -> np.ndarray:
    return _png_pixels(list(reply.json()["outputs"][0]["data"]))


def _v2_binary_image(reply: httpx.Response) -> np.ndarray:
    """The ``image`` output of a binary v2 reply, as tritonclient reads it."""
    from tritonclient import http

    length = int(reply.headers["inference-header-content-length"])
    result = http.InferResult.from_response_body(reply.content, header_length=length)
    image = result.as_numpy("image")
    if image is None:
        raise ValueError("no image output in the v2 reply")
    return to_pixels(image)


def _pytriton_env() -> dict[str, str]:
    """Triton's Python backend loads libpython from the venv's base Python (its ``home``)."""
    cfg = PYTRITON_VENV / "pyvenv.cfg"
    lines = cfg.read_text().splitlines() if cfg.is_file() else []
    pairs = [line.partition("=") for line in lines]
    home = next((value.strip() for key, _, value in pairs if key.strip() == "home"), None)
    lib = str(Path(home).parent / "lib") if home else ""
    return {"LD_LIBRARY_PATH": ":".join(p for p in (lib, os.environ.get("LD_LIBRARY_PATH")) if p)}


def _batched_peer(family: str, about: str, ready: str, workers: int) -> ServerSpec:
    """LitServe or Mosec, ``workers`` worker processes per model."""
    script = [sys.executable, str(PEERS / f"{family}_server.py"), "--workers", str(workers)]
    name = family if workers == 1 else f"{family}-{workers}w"
    return ServerSpec(name, about, family, script, [ready], _per_model_route, _images_field,
                      batched=True, needs=(family,))  # fmt: skip


def _litserve(workers: int) -> ServerSpec:
    per = "one worker process" if workers == 1 else f"{workers} worker processes"
    about = (
        f"LitServe, one LitAPI per model, {per} per model (workers_per_device={workers}), "
        "batching by max_batch_size/batch_timeout"
    )
    return _batched_peer("litserve", about, "/health", workers)


def _mosec(workers: int) -> ServerSpec:
    per = "one Python worker" if workers == 1 else f"{workers} Python workers"
    about = (
        f"Mosec: Rust HTTP server, {per} per model (append_worker num={workers}), dynamic batching"
    )
    return _batched_peer("mosec", about, "/", workers)


def _pytriton(name: str, instances: int) -> ServerSpec:
    per = "one instance" if instances == 1 else f"{instances} instances"
    python, script = str(PYTRITON_VENV / "bin" / "python"), str(PEERS / "pytriton_server.py")
    return ServerSpec(
        name,
        f"PyTriton: Triton server, Python backend, {per} of the inference callable per model, "
        "dynamic batcher and @batch, KServe v2",
        "pytriton",
        [python, script, "--instances", str(instances)],
        ["/v2/health/ready", "/v2/models/dcgan-fashion/ready", "/v2/models/vae-fashion/ready"],
        _kserve_v2,
        _kserve_images,
        port_flags=("--http-port", "--grpc-port", "--metrics-port"),
        batched=True,
        env=_pytriton_env,
        stop_grace_s=20.0,
        stop_signal=signal.SIGINT,  # PyTriton's documented way to quit
        leftovers=lambda pid: list(Path("/dev/shm").glob(f"pytrtion{pid}-*")),
        stops_its_children=True,  # it stops Triton, which unloads models and shared memory
    )


SERVICE = ServerSpec(
    "service",
    "this service: python -m service, its defaults (uvicorn; SERVICE_WORKERS: one worker "
    "process per usable core), POST /sample",
    "service",
    [sys.executable, "-m", "service", "--host", "127.0.0.1", "--log-level", "warning"],
    ["/health/ready"],
    _sample_body,
    _images_field,
)
SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in [
        SERVICE,
        replace(
            SERVICE,
            name="service-granian",
            about="this service on granian (SERVICE_HTTP_SERVER=granian), one worker per core, "
            "POST /sample",
            env=lambda: {"SERVICE_HTTP_SERVER": "granian"},
        ),
        replace(
            SERVICE,
            name="service-1w",
            about="this service with SERVICE_WORKERS=1 (one uvicorn process), POST /sample",
            env=lambda: {"SERVICE_WORKERS": "1"},
        ),
        replace(
            SERVICE,
            name="service-granian-1w",
            about="this service in one granian worker (SERVICE_HTTP_SERVER=granian, "
            "SERVICE_WORKERS=1), POST /sample",
            env=lambda: {"SERVICE_HTTP_SERVER": "granian", "SERVICE_WORKERS": "1"},
        ),
        replace(
            SERVICE,
            name="service-v2",
            about="this service as `service`, KServe v2 POST /v2/models/<model>.<graph>/infer, "
            "z in and image out as binary tensor data",
            request=_kserve_v2_binary,
            pixels=_v2_binary_image,
            ready_paths=[
                "/health/ready",
                "/v2/models/dcgan-fashion.generator/ready",
                "/v2/models/vae-fashion.decoder/ready",
            ],
        ),
        _litserve(1),
        _litserve(2),
        _pytriton("pytriton", 1),
        _pytriton("pytriton-2i", 2),
        _mosec(1),
        _mosec(2),
        ServerSpec(
            "naive-torch",
            "FastAPI + torch eager, as a tutorial writes it: no batching",
            "naive-torch",
            [sys.executable, str(PEERS / "naive_torch.py")],
            ["/health"],
            _sample_body,
            _images_field,
            needs=("torch", "fastapi", "uvicorn"),
        ),
    ]
}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def post(url: str, request: Request, timeout: float = 60.0) -> httpx.Response:
    data, headers = request.encoded()
    return httpx.post(url, content=data, headers=headers, timeout=timeout).raise_for_status()


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


@dataclass
class RunningServer(Service):
    """A server started in its own process group: harness's live service (its URL, process,
    log and memory over its process tree), whichever server it is."""

    spec: ServerSpec = field(kw_only=True)
    store: Path = field(kw_only=True)
    started: float = field(default_factory=time.perf_counter, kw_only=True)

    @classmethod
    def start(
        cls, spec: ServerSpec, store: Path, batching: PeerBatching, log_dir: Path
    ) -> RunningServer:
        ports = free_ports(len(spec.port_flags))
        env = {**os.environ, **spec.env(), "SERVICE_MODEL_STORE": str(store)}
        env["PYTHONUNBUFFERED"] = "1"
        log = log_dir / f"{spec.name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                spec.command(ports, store, batching),
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one at the end
            )
        return cls(f"http://127.0.0.1:{ports[0]}", process, log, spec=spec, store=store)

    def wait_ready(self, deadline_s: float) -> None:
        """Until every ready path answers 200; raises RuntimeError on exit or time-out."""
        end = self.started + deadline_s
        pending = list(self.spec.ready_paths)
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"exited with {self.process.returncode} while starting")
            if time.perf_counter() > end:
                raise RuntimeError(f"not ready within {deadline_s:.0f} s ({pending[0]})")
            if _status(self.url + pending[0]) == 200:
                pending.pop(0)
            else:
                time.sleep(0.1)
        self.ready_s = time.perf_counter() - self.started

    def request(self, model: str, n: int) -> Request:
        return self.spec.request(model, n, self.store)

    def sample(self, model: str, n: int, timeout: float = 60.0) -> np.ndarray:
        """n images of SEED from the server, as 8-bit pixels (n, H, W)."""
        request = self.request(model, n)
        return self.spec.pixels(post(self.url + request.path, request, timeout))

    def memory(self) -> tuple[float, float]:
        """RSS (shared pages once per process) and PSS in MiB, summed over the process tree."""
        return self.rss_bytes() / 2**20, sum(self.pss_by_process().values()) / 2**20

    def stop(self) -> None:
        """The stop signal to its process group and every process of its tree (or to its own
        process only); once that has exited (or its grace is up), SIGKILL to what is left."""
        pids = set(rss_of_tree(self.process.pid))
        if self.spec.stops_its_children:
            self._signal_all({self.process.pid}, self.spec.stop_signal, group=False)
        else:
            self._signal_all(pids, self.spec.stop_signal)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=self.spec.stop_grace_s)
            time.sleep(0.5)  # a moment for its children to finish exiting
        self._signal_all(pids, signal.SIGKILL)
        self.process.wait(timeout=10)
        for path in self.spec.leftovers(self.process.pid):
            path.unlink(missing_ok=True)

    def _signal_all(self, pids: set[int], sig: signal.Signals, group: bool = True) -> None:
        if group:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
        for pid in pids:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

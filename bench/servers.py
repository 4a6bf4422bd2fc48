"""The servers the bench measures: how to start each one, when it is ready, how to ask it for
images, its memory, and how to stop it together with every process it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

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
    body: dict[str, Any]


@dataclass(frozen=True)
class ServerSpec:
    name: str
    about: str
    command: Callable[[list[int], Path, PeerBatching], list[str]]
    ready_paths: list[str]
    request: Callable[[str, int], Request]
    images: Callable[[dict[str, Any]], list[str]]
    ports: int = 1
    env: Callable[[], dict[str, str]] = dict
    missing: Callable[[], str | None] = lambda: None
    """Why the server cannot run here (not installed), or None."""
    stop_grace_s: float = 5.0
    """How long the stop signal has before SIGKILL."""
    stop_signal: signal.Signals = signal.SIGTERM
    leftovers: Callable[[int], list[Path]] = lambda pid: []
    """Files that a server with this process id leaves behind when it is killed."""
    stops_its_children: bool = False
    """The stop signal goes to its own process only, which shuts its children down in order."""


def _sample_body(model: str, n: int) -> Request:
    return Request("/sample", {"model": model, "n": n, "seed": SEED})


def _per_model_route(model: str, n: int) -> Request:
    return Request(f"/sample/{model}", {"n": n, "seed": SEED})


def _kserve_v2(model: str, n: int) -> Request:
    inputs = [
        {"name": "seed", "shape": [1, 1], "datatype": "INT64", "data": [SEED]},
        {"name": "n", "shape": [1, 1], "datatype": "INT32", "data": [n]},
    ]
    return Request(f"/v2/models/{model}/infer", {"inputs": inputs})


def _images_field(reply: dict[str, Any]) -> list[str]:
    return list(reply["images"])


def _kserve_images(reply: dict[str, Any]) -> list[str]:
    return list(reply["outputs"][0]["data"])


def _needs(*modules: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        absent = [m for m in modules if find_spec(m) is None]
        return f"not installed ({', '.join(absent)}); run make bench-throughput" if absent else None

    return missing


def _peer(script: str) -> Callable[[list[int], Path, PeerBatching], list[str]]:
    def command(ports: list[int], store: Path, batching: PeerBatching) -> list[str]:
        return [sys.executable, str(PEERS / script), "--port", str(ports[0]), "--store", str(store)]

    return command


def _batched_peer(script: str) -> Callable[[list[int], Path, PeerBatching], list[str]]:
    plain = _peer(script)
    return lambda ports, store, batching: plain(ports, store, batching) + batching.args()


def _service_command(ports: list[int], store: Path, batching: PeerBatching) -> list[str]:
    host = ["--host", "127.0.0.1", "--port", str(ports[0])]
    return [sys.executable, "-m", "service", *host, "--log-level", "warning"]


def _pytriton_command(ports: list[int], store: Path, batching: PeerBatching) -> list[str]:
    http, grpc, metrics = (str(p) for p in ports)
    script = str(PEERS / "pytriton_server.py")
    ports_args = ["--http-port", http, "--grpc-port", grpc, "--metrics-port", metrics]
    python = str(PYTRITON_VENV / "bin" / "python")
    return [python, script, *ports_args, "--store", str(store), *batching.args()]


def _pytriton_env() -> dict[str, str]:
    """Triton's Python backend loads libpython from the venv's base Python."""
    home = _pyvenv_home()
    lib = str(Path(home).parent / "lib") if home else ""
    return {"LD_LIBRARY_PATH": ":".join(p for p in (lib, os.environ.get("LD_LIBRARY_PATH")) if p)}


def _pyvenv_home() -> str | None:
    cfg = PYTRITON_VENV / "pyvenv.cfg"
    if not cfg.is_file():
        return None
    for line in cfg.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return value.strip()
    return None


def _pytriton_missing() -> str | None:
    if not (PYTRITON_VENV / "bin" / "python").is_file():
        return f"{PYTRITON_VENV.name} is missing; run make bench-throughput"
    return None


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in [
        ServerSpec(
            "service",
            "this service: python -m service (SERVICE_* settings from the environment)",
            _service_command,
            ["/health/ready"],
            _sample_body,
            _images_field,
        ),
        ServerSpec(
            "litserve",
            "LitServe, one LitAPI per model, batching by max_batch_size/batch_timeout",
            _batched_peer("litserve_server.py"),
            ["/health"],
            _per_model_route,
            _images_field,
            missing=_needs("litserve"),
        ),
        ServerSpec(
            "pytriton",
            "PyTriton: Triton server, Python backend, dynamic batcher and @batch, KServe v2",
            _pytriton_command,
            ["/v2/health/ready", "/v2/models/dcgan-fashion/ready", "/v2/models/vae-fashion/ready"],
            _kserve_v2,
            _kserve_images,
            ports=3,
            env=_pytriton_env,
            missing=_pytriton_missing,
            stop_grace_s=20.0,
            stop_signal=signal.SIGINT,  # PyTriton's documented way to quit
            leftovers=lambda pid: list(Path("/dev/shm").glob(f"pytrtion{pid}-*")),
            stops_its_children=True,  # it stops Triton, which unloads models and shared memory
        ),
        ServerSpec(
            "mosec",
            "Mosec: Rust HTTP server, one Python worker per model, dynamic batching",
            _batched_peer("mosec_server.py"),
            ["/"],
            _per_model_route,
            _images_field,
            missing=_needs("mosec"),
        ),
        ServerSpec(
            "naive-torch",
            "FastAPI + torch eager, as a tutorial writes it: no batching",
            _peer("naive_torch.py"),
            ["/health"],
            _sample_body,
            _images_field,
            missing=_needs("torch", "fastapi", "uvicorn"),
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


def post_json(url: str, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return dict(json.load(reply))


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


@dataclass
class Memory:
    rss_mib: float
    pss_mib: float
    processes: int


@dataclass
class RunningServer:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    started: float = field(default_factory=time.perf_counter)
    ready_s: float | None = None

    @classmethod
    def start(
        cls, spec: ServerSpec, store: Path, batching: PeerBatching, log_dir: Path
    ) -> RunningServer:
        ports = free_ports(spec.ports)
        env = {**os.environ, **spec.env(), "SERVICE_MODEL_STORE": str(store)}
        env["PYTHONUNBUFFERED"] = "1"
        log_path = log_dir / f"{spec.name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                spec.command(ports, store, batching),
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one at the end
            )
        return cls(spec, process, f"http://127.0.0.1:{ports[0]}", log_path)

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

    def sample(self, model: str, n: int, timeout: float = 60.0) -> list[str]:
        request = self.spec.request(model, n)
        return self.spec.images(post_json(self.url + request.path, request.body, timeout))

    def tree(self) -> list[int]:
        """The server's process and all its descendants, now."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            ppid = int(text.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
        tree, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree

    def memory(self) -> Memory:
        """Summed over the process tree: RSS (shared pages once per process) and PSS."""
        rss = pss = 0
        pids = self.tree()
        for pid in pids:
            rss += _kib(Path(f"/proc/{pid}/status"), "VmRSS")
            pss += _kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss")
        return Memory(rss / 1024, pss / 1024, len(pids))

    def stop(self) -> None:
        """The stop signal to its process group and every process of its tree (or to its own
        process only); once that has exited (or its grace is up), SIGKILL to what is left."""
        pids = set(self.tree())
        if self.spec.stops_its_children:
            self._signal_all({self.process.pid}, self.spec.stop_signal, group=False)
        else:
            self._signal_all(pids, self.spec.stop_signal)
        try:
            self.process.wait(timeout=self.spec.stop_grace_s)
            time.sleep(0.5)  # a moment for its children to finish exiting
        except subprocess.TimeoutExpired:
            pass
        self._signal_all(pids, signal.SIGKILL)
        self.process.wait(timeout=10)
        for path in self.spec.leftovers(self.process.pid):
            path.unlink(missing_ok=True)

    def _signal_all(self, pids: set[int], sig: signal.Signals, group: bool = True) -> None:
        if group:
            try:
                os.killpg(self.process.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _kib(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return 0

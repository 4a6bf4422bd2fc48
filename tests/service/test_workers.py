"""Several worker processes on one port: readiness is the whole service's, an admin's change
reaches every worker, the store watch too, the autoregressive slots bound the whole service,
and the run folder goes when the service does."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness.live_server import running_service
from harness.store_faults import copy_store, publish_next_version
from service.registry.control import ModelControl
from service.registry.fleet import Readiness, SharedFleet
from service.registry.loader import LoadOptions, ModelLoader
from service.registry.registry import LoadedModel, ModelState, Registry
from service.runtime.batching import BatchPolicy
from service.runtime.rundir import RunDir, write_json
from service.runtime.sessions import GraphOptions, SessionTuning
from service.runtime.slots import FileSlots

TOKEN = "an-admin-token-of-some-length"
GRAPHS = GraphOptions(("CPUExecutionProvider",), SessionTuning(), BatchPolicy())
"""For a fleet's control that never loads a graph."""
WORKERS = {"SERVICE_DEVICE": "cpu", "SERVICE_WORKERS": "2", "SERVICE_ADMIN_TOKEN": TOKEN}
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _answers(url: str, body: dict[str, object], count: int = 24) -> list[httpx.Response]:
    """``count`` /sample calls on as many connections at once, so that both workers answer."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: httpx.post(f"{url}/sample", json=body), range(count)))


@pytest.fixture(scope="module")
def served_store(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_store(tiny_store, tmp_path_factory.mktemp("workers") / "store")


@pytest.fixture(scope="module", params=["uvicorn", "granian"])
def two_workers(served_store: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """Two workers on each HTTP server the service can run on (SERVICE_HTTP_SERVER)."""
    settings = {**WORKERS, "SERVICE_WATCH_INTERVAL_S": "0.3", "SERVICE_HTTP_SERVER": request.param}
    with running_service(served_store, **settings) as url:
        yield url


def _fleet(run: RunDir, workers: int, states: dict[str, ModelState]) -> SharedFleet:
    models = {name: LoadedModel(name, state) for name, state in states.items()}
    registry = Registry(models, {})
    registry.loaded = True
    loader = ModelLoader(LoadOptions(run.root / "no-store", GRAPHS, GRAPHS))
    return SharedFleet(run, workers, registry, ModelControl(registry, loader), Readiness.ANY)


def test_readiness_waits_for_every_worker_and_takes_the_least_ready(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "run")
    fleet = _fleet(run, 2, {"a": ModelState.READY, "b": ModelState.READY})
    status = fleet.status()
    assert not status.ready and status.why_not == "1 of 2 workers have started"
    other = {"pid": os.getppid(), "loaded": True,
             "models": {"a": {"state": "ready", "version": 1, "provider": "CPU", "providers": {},
                              "reason": None},
                        "b": {"state": "failed", "version": 1, "provider": None, "providers": {},
                              "reason": "broken there"}}}  # fmt: skip
    write_json(run.workers / f"{os.getppid()}.json", other)
    status = fleet.status()
    assert status.ready  # "any": one model serves in every worker
    assert (
        status.models["b"].state is ModelState.FAILED
        and status.models["b"].reason == "broken there"
    )
    fleet.policy = Readiness.STRICT
    assert not fleet.status().ready
    assert "broken there" in (fleet.status().why_not or "")
    other["loaded"] = False
    write_json(run.workers / f"{os.getppid()}.json", other)
    fleet.policy = Readiness.ANY
    assert not fleet.status().ready


def test_a_dead_worker_s_state_is_forgotten(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "run")
    fleet = _fleet(run, 1, {"a": ModelState.READY})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    ghost = run.workers / f"{dead.stdout.strip()}.json"
    write_json(ghost, {"pid": int(dead.stdout), "loaded": False, "models": {}})
    assert fleet.status().ready and not ghost.exists()


def test_the_slots_bound_every_process_sharing_them(tmp_path: Path) -> None:
    async def scenario() -> list[bool]:
        here, there = FileSlots(tmp_path, 1), FileSlots(tmp_path, 1)
        assert await here.acquire(1.0)
        blocked = await there.acquire(0.05)
        here.release()
        freed = await there.acquire(1.0)
        there.release()
        return [blocked, freed]

    assert asyncio.run(scenario()) == [False, True]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w');"
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)",
         str(tmp_path / "slot-0")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    slots = FileSlots(tmp_path, 1)
    assert asyncio.run(slots.acquire(0.1)) is False  # another process holds the only slot
    holder.kill()
    holder.wait()
    assert asyncio.run(slots.acquire(1.0)) is True  # the kernel freed it with the process
    slots.release()


def test_both_workers_serve_and_are_ready(two_workers: str) -> None:
    ready = httpx.get(f"{two_workers}/health/ready").json()
    assert ready["ready"] is True and ready["models"]["vae-tiny"]["state"] == "ready"
    answers = _answers(two_workers, {"model": "dcgan-tiny", "seed": 3})
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["images"][0] for a in answers}) == 1  # same seed, any worker


def test_an_admin_unload_and_load_reach_every_worker(two_workers: str) -> None:
    unloaded = httpx.post(f"{two_workers}/admin/models/vae-tiny/unload", headers=ADMIN)
    assert unloaded.status_code == 200 and unloaded.json()["state"] == "unloaded"
    refused = _answers(two_workers, {"model": "vae-tiny"})
    assert {a.status_code for a in refused} == {503}
    assert {a.json()["code"] for a in refused} == {"model_not_ready"}
    metrics = httpx.get(f"{two_workers}/metrics").text
    assert 'genserve_model_ready{model="vae-tiny"' not in metrics
    loaded = httpx.post(f"{two_workers}/admin/models/vae-tiny/load", headers=ADMIN)
    assert loaded.status_code == 200 and loaded.json()["state"] == "ready"
    assert {a.status_code for a in _answers(two_workers, {"model": "vae-tiny"})} == {200}
    assert (
        'genserve_model_ready{model="vae-tiny",version="1"} 1.0'
        in httpx.get(f"{two_workers}/metrics").text
    )


def test_a_new_version_in_the_store_reaches_every_worker(
    two_workers: str, served_store: Path
) -> None:
    version = httpx.get(f"{two_workers}/health/ready").json()["models"]["dcgan-tiny"]["version"]
    publish_next_version(served_store, "dcgan-tiny")
    deadline, versions = time.monotonic() + 30, set()
    while time.monotonic() < deadline:
        versions = {a.json()["version"] for a in _answers(two_workers, {"model": "dcgan-tiny"})}
        if versions == {version + 1}:
            break
        time.sleep(0.3)
    assert versions == {version + 1}, versions


def test_the_run_folder_goes_with_the_service(tiny_store: Path, tmp_path: Path) -> None:
    def runs() -> set[Path]:
        return {p for p in tmp_path.glob("genserve-run-*") if p.is_dir()}

    # A temporary directory of its own, so that other services on the machine don't count.
    with running_service(tiny_store, TMPDIR=str(tmp_path), **WORKERS) as url:
        assert httpx.get(f"{url}/health/ready").status_code == 200
        mine = runs()
        assert len(mine) == 1 and len(list(next(iter(mine)).glob("workers/*.json"))) == 2
    assert not any(p.exists() for p in mine)

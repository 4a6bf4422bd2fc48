"""The service as a whole, whether it runs in one process or in several workers: the state of
every model across the workers, the readiness policy, and the admin's model changes, which
every worker applies.

One process (``SoloFleet``): the registry is the whole service. Several workers sharing a run
folder (``SharedFleet``): each publishes its models' states to ``workers/<pid>.json``; any worker
answers for all, a model being as ready as it is in its least ready worker; and an admin's
load, unload or reload, done by the worker that took the request, is written to
``control/changes.json``, which the others watch and apply in turn.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from service.errors import ModelLoadFailed
from service.registry.control import Action, ModelChange, ModelControl
from service.registry.registry import LoadedModel, ModelState, Registry
from service.runtime.rundir import RunDir, alive, read_json, write_json

log = logging.getLogger(__name__)

WATCH_S = 0.2
"""How often a worker looks for changes the others made, and how often it republishes."""
SETTLE_S = 60.0
"""How long an admin change waits for every worker to have made it too."""
_RANK = {
    ModelState.FAILED: 0, ModelState.LOADING: 1, ModelState.UNLOADED: 2,
    ModelState.UNSUPPORTED: 3, ModelState.READY: 4,
}  # fmt: skip
"""The least ready worker's state is the service's."""


class Readiness(StrEnum):
    STRICT = "strict"
    """Every model that should serve is ready: one that failed takes the service out."""
    ANY = "any"
    """At least one model is ready; the others' states still show."""


@dataclass(frozen=True)
class ModelStatus:
    state: ModelState
    version: int | None
    provider: str | None
    providers: dict[str, str]
    reason: str | None

    @classmethod
    def of(cls, model: LoadedModel) -> ModelStatus:
        provider, providers = model.provider, model.providers
        return cls(model.state, model.version, provider, providers, model.reason)

    def as_json(self) -> dict[str, Any]:
        return {"state": self.state.value, "version": self.version, "provider": self.provider,
                "providers": self.providers, "reason": self.reason}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelStatus:
        return cls(ModelState(data["state"]), data["version"], data["provider"],
                   dict(data["providers"]), data["reason"])  # fmt: skip


@dataclass(frozen=True)
class ServiceStatus:
    ready: bool
    models: dict[str, ModelStatus]
    why_not: str | None = None


class Fleet(Protocol):
    def status(self) -> ServiceStatus: ...

    async def change(self, name: str, action: Action) -> ModelChange:
        """Load, reload or unload ``name`` in every worker; the change this worker made."""

    async def run(self) -> None:
        """Keep the workers in step, until cancelled (nothing to do in one process)."""


def judge(
    loaded: bool, models: Mapping[str, ModelStatus], policy: Readiness
) -> tuple[bool, str | None]:
    """Ready or not under ``policy``, and why not."""
    if not loaded:
        return False, "models are still loading"
    states = {name: m.state for name, m in models.items()}
    failed = [f"{name} ({m.reason})" for name, m in models.items() if m.state is ModelState.FAILED]
    serving = ModelState.READY in states.values()
    if policy is Readiness.STRICT and failed:
        return False, "not ready: " + "; ".join(failed)
    if serving:
        return True, None
    if failed:
        return False, "no model serves: " + "; ".join(failed)
    unloaded = [name for name, state in states.items() if state is ModelState.UNLOADED]
    if unloaded:
        return False, "no model serves: unloaded by an admin: " + ", ".join(unloaded)
    return False, "the model store holds no model this service can serve"


class SoloFleet:
    def __init__(self, registry: Registry, control: ModelControl, policy: Readiness) -> None:
        self.registry, self.control, self.policy = registry, control, policy

    def status(self) -> ServiceStatus:
        models = {name: ModelStatus.of(m) for name, m in self.registry.models.items()}
        ready, why = judge(self.registry.loaded, models, self.policy)
        return ServiceStatus(ready, models, why)

    async def change(self, name: str, action: Action) -> ModelChange:
        return await self.control.apply(name, action)

    async def run(self) -> None:
        return None


class SharedFleet:
    """One of ``workers`` processes sharing ``run``."""

    def __init__(
        self,
        run: RunDir,
        workers: int,
        registry: Registry,
        control: ModelControl,
        policy: Readiness,
    ) -> None:
        self.run_dir, self.workers, self.registry = run, workers, registry
        self.control, self.policy = control, policy
        self.pid = os.getpid()
        self.changes = run.control / "changes.json"
        # A worker that (re)starts loads what the store holds now, so it needs none of the past
        # changes but the unloads: an admin took those models out, and out they stay.
        recorded = read_json(self.changes) or {}
        self.applied = {name: int(c["generation"]) for name, c in recorded.items()}
        self.unloaded = [n for n, c in recorded.items() if c["action"] == Action.UNLOAD.value]
        self._published: Any = None

    # ------------------------------------------------------------ state, for health and metrics

    def publish(self) -> None:
        """This worker's models, for the others (only when they changed)."""
        models = {name: ModelStatus.of(m).as_json() for name, m in self.registry.models.items()}
        state = {"pid": self.pid, "loaded": self.registry.loaded, "models": models}
        if state != self._published:
            write_json(self.run_dir.workers / f"{self.pid}.json", state)
            self._published = state

    def worker_states(self) -> list[dict[str, Any]]:
        """The published state of every live worker; a dead one's file is removed."""
        found = []
        for path in self.run_dir.workers.glob("*.json"):
            state = read_json(path)
            if not isinstance(state, dict) or "pid" not in state:
                continue
            if state["pid"] != self.pid and not alive(state["pid"]):
                path.unlink(missing_ok=True)
                continue
            found.append(state)
        return found

    def status(self) -> ServiceStatus:
        self.publish()
        states = self.worker_states()
        models: dict[str, ModelStatus] = {}
        for state in states:
            for name, data in state["models"].items():
                status = ModelStatus.from_json(data)
                known = models.get(name)
                if known is None or _RANK[status.state] < _RANK[known.state]:
                    models[name] = status
        loaded = len(states) >= self.workers and all(s["loaded"] for s in states)
        if len(states) < self.workers:
            started = f"{len(states)} of {self.workers} workers have started"
            return ServiceStatus(False, dict(sorted(models.items())), started)
        workers_ready = []
        why: str | None = None
        for state in states:
            mine = {n: ModelStatus.from_json(d) for n, d in state["models"].items()}
            ok, reason = judge(state["loaded"], mine, self.policy)
            workers_ready.append(ok)
            why = why or (None if ok else f"worker {state['pid']}: {reason}")
        return ServiceStatus(loaded and all(workers_ready), dict(sorted(models.items())), why)

    # ------------------------------------------------------------ admin changes, for every worker

    async def change(self, name: str, action: Action) -> ModelChange:
        """Make the change here, then have the other workers make it, and wait until they
        have (up to SETTLE_S)."""
        done = await self.control.apply(name, action)
        if done.changed or action is Action.RELOAD:
            generation = await asyncio.to_thread(self._record, name, action)
            self.applied[name] = generation
            await self._settle(name, done)
        return done

    def _record(self, name: str, action: Action) -> int:
        """Append the change for the others, under a lock: two admins may write at once."""
        with (self.run_dir.control / "changes.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            changes = read_json(self.changes) or {}
            generation = int(changes.get(name, {}).get("generation", 0)) + 1
            changes[name] = {"generation": generation, "action": action.value, "by": self.pid}
            write_json(self.changes, changes)
        return generation

    async def _settle(self, name: str, done: ModelChange) -> None:
        """Wait until every live worker shows the model as this one left it."""
        want = (done.current.state.value, done.current.version)
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            states = self.worker_states()
            seen = [s["models"].get(name) for s in states]
            if all(m is not None and (m["state"], m["version"]) == want for m in seen):
                return
            await asyncio.sleep(WATCH_S / 2)
        log.warning("%s: not every worker made the %s in %.0f s", name, done.action, SETTLE_S)

    async def run(self) -> None:
        """Publish this worker's state, and apply the changes the others record."""
        for name in self.unloaded:
            if name in self.registry.models:
                await self.control.unload(name)
        while True:
            try:
                self.publish()
                changes = await asyncio.to_thread(read_json, self.changes) or {}
                for name, change in changes.items():
                    generation = int(change["generation"])
                    if generation <= self.applied.get(name, 0):
                        continue
                    self.applied[name] = generation
                    try:
                        await self.control.apply(name, Action(change["action"]))
                    except ModelLoadFailed as exc:
                        log.error("applying worker %s's change: %s", change["by"], exc.message)
                self.publish()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("keeping the workers in step failed")
            await asyncio.sleep(WATCH_S)

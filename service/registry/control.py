"""Loading, unloading and reloading models while the service runs, and watching the store.

A reload loads and warms the store's newest version beside the one serving, then swaps it in
with one assignment (``Registry.swap``). Requests that already took the old model finish on it:
its graphs' batchers are retired, which finishes their queues and refuses nothing. If the new
version does not load, the old one keeps serving and the caller learns why.

Names come from the caller but are only ever looked up among the store's models, never joined
into a path.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import anyio.to_thread

from modelstore.discovery import StoreEntry
from modelstore.layout import graph_model
from service.errors import ModelLoadFailed, ModelNotFound, ModelNotReady
from service.registry.loader import ModelLoader
from service.registry.registry import LoadedModel, ModelState, Registry
from service.runtime.memory import return_free_memory

log = logging.getLogger(__name__)

RETIRE_WAIT_S = 60.0
"""How long a retired version's queues may take to drain before we stop watching them."""

Fingerprint = tuple[tuple[str, int, int], ...]


class Action(StrEnum):
    LOAD = "load"
    UNLOAD = "unload"
    RELOAD = "reload"


@dataclass(frozen=True)
class ModelChange:
    name: str
    action: Action
    previous: LoadedModel | None
    current: LoadedModel
    changed: bool
    """False when there was nothing to do (already loaded at that version, already unloaded)."""
    seconds: float
    """Spent loading and warming the new version."""


class ModelControl:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._locks: dict[str, asyncio.Lock] = {}
        self._tried: dict[str, Fingerprint] = {}

    async def apply(self, name: str, action: Action) -> ModelChange:
        """``load``, ``reload`` or ``unload``, by the action's name."""
        if action is Action.UNLOAD:
            return await self.unload(name)
        return await self._replace(name, action)

    async def load(self, name: str) -> ModelChange:
        """Serve the store's newest version of ``name``; nothing to do if it already does."""
        return await self._replace(name, Action.LOAD)

    async def reload(self, name: str) -> ModelChange:
        """Load the store's newest version of ``name`` again, even if it is the one serving."""
        return await self._replace(name, Action.RELOAD)

    async def unload(self, name: str) -> ModelChange:
        """Stop serving ``name``; requests already running on it finish."""
        async with self._lock(name):
            previous = self.registry.get(name)
            if previous.state is ModelState.UNLOADED:
                return ModelChange(name, Action.UNLOAD, previous, previous, False, 0.0)
            current = LoadedModel(
                name, ModelState.UNLOADED, "unloaded by an admin", card=previous.card
            )
            self.registry.swap(current)
            log.info("%s v%s unloaded", name, previous.version)
            await _retire(previous)
            return ModelChange(name, Action.UNLOAD, previous, current, True, 0.0)

    async def watch(self, interval: float) -> None:
        """Every ``interval`` seconds, load new models and new versions (runs until cancelled).

        A model an admin unloaded stays unloaded; a version that failed to load is tried again
        only once its files change."""
        loader = self._loader()
        entries = await anyio.to_thread.run_sync(loader.entries)
        root = loader.store
        # Versions that failed at start-up are not retried until their files change. Anything
        # else is judged by poll(): a version published while the service started is news.
        self._tried = {
            name: _fingerprint(root, entry)
            for name, entry in entries.items()
            if (model := self.registry.models.get(name)) is not None
            and model.state is ModelState.FAILED
        }
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll()
            except Exception:
                log.exception("watching the model store failed")

    async def poll(self) -> list[ModelChange]:
        """One look at the store: load what is new, return what changed."""
        loader = self._loader()
        entries = await anyio.to_thread.run_sync(loader.entries)
        changes = []
        for name, entry in entries.items():
            mark = await anyio.to_thread.run_sync(_fingerprint, loader.store, entry)
            if self._tried.get(name) == mark or not _is_news(entry, self.registry.models.get(name)):
                continue
            self._tried[name] = mark
            try:
                changes.append(await self._replace(name, Action.LOAD))
            except ModelLoadFailed as exc:
                log.error("watch: %s", exc.message)
        return changes

    async def _replace(self, name: str, action: Action) -> ModelChange:
        loader = self._loader()
        async with self._lock(name):
            entry = await self._entry(loader, name)
            previous = self.registry.models.get(name)
            if (
                action is Action.LOAD
                and previous is not None
                and previous.state is ModelState.READY
                and previous.version == entry.version
            ):
                return ModelChange(name, action, previous, previous, False, 0.0)
            started = time.perf_counter()
            loaded = await anyio.to_thread.run_sync(loader.load, entry, True)
            seconds = time.perf_counter() - started
            if loaded.state is ModelState.READY:
                self.registry.swap(loaded)
                log.info(
                    "%s: v%s serving in place of v%s (loaded in %.2f s)",
                    name, loaded.version, previous.version if previous else None, seconds,
                )  # fmt: skip
                if previous is not None:
                    await _retire(previous)
                return ModelChange(name, action, previous, loaded, True, seconds)
            version = f" v{loaded.version}" if loaded.version else ""
            if previous is not None and previous.state is ModelState.READY:
                await _retire(loaded)
                raise ModelLoadFailed(
                    f"{name}{version} did not load, v{previous.version} keeps serving: "
                    f"{loaded.reason}"
                )
            if previous is not None and previous.state is ModelState.FAILED:
                self.registry.swap(loaded)  # still failed: /health/ready gives the new reason
            # A model that was not serving stays out: one bad publish must not take the
            # service out of readiness while every other model serves.
            raise ModelLoadFailed(f"{name}{version} did not load: {loaded.reason}")

    def _loader(self) -> ModelLoader:
        if self.registry.loader is None:
            raise ModelNotReady("the model store is still loading")
        return self.registry.loader

    async def _entry(self, loader: ModelLoader, name: str) -> StoreEntry:
        entries = await anyio.to_thread.run_sync(loader.entries)
        if name not in entries:
            known = ", ".join(entries) or "none"
            raise ModelNotFound(f"model {name!r} is not in the store (models: {known})")
        return entries[name]

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())


def _is_news(entry: StoreEntry, current: LoadedModel | None) -> bool:
    if current is None:
        return True
    if current.state is ModelState.UNLOADED:
        return False
    if current.state is ModelState.READY:
        return (entry.version or 0) > (current.version or 0)
    return True  # failed or unsupported, and its files changed: maybe fixed


def _fingerprint(root: Path, entry: StoreEntry) -> Fingerprint:
    """Name, mtime and size of the model's card and of its version's graph files."""
    if entry.card_path is None:
        return ()
    paths = [entry.card_path]
    version = entry.version
    if version is not None:
        paths += sorted(root.glob(f"{graph_model(entry.name, '*')}/{version}/*"))
    marks = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue
        marks.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(marks)


async def _retire(model: LoadedModel) -> None:
    """Let a replaced model's queues drain, then free its sessions (graph and batcher refer to
    each other, so only the cycle collector frees them)."""
    for graph in model.graphs.values():
        graph.retire()
    deadline = time.monotonic() + RETIRE_WAIT_S
    while any(graph.busy for graph in model.graphs.values()):
        if time.monotonic() > deadline:
            log.warning("%s v%s: retired graphs still busy", model.name, model.version)
            return
        await asyncio.sleep(0.01)
    gc.collect()
    return_free_memory()

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
from functools import partial
from pathlib import Path

import anyio.to_thread

from modelstore.card import ModelCard
from modelstore.checksums import verify_files
from modelstore.discovery import StoreEntry, read_card
from modelstore.errors import StoreError
from modelstore.layout import card_file, graph_model
from service.errors import ModelLoadFailed, ModelNotFound
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


class LogOnce:
    """Logs a problem once, not once per poll: again only when its message changes, and once
    when it is over."""

    def __init__(self) -> None:
        self._said: dict[str, str] = {}

    def problem(
        self, key: str, message: str, level: int = logging.WARNING, exc_info: bool = False
    ) -> None:
        if self._said.get(key) != message:
            self._said[key] = message
            log.log(level, message, exc_info=exc_info)

    def over(self, key: str, message: str | None = None) -> None:
        """The problem under ``key`` is over: say ``message`` if there was one."""
        if self._said.pop(key, None) is not None and message is not None:
            log.info(message)

    def forget(self, keep: set[str], prefix: str) -> None:
        """Drop the problems under ``prefix`` but those in ``keep``, saying nothing."""
        for key in [k for k in self._said if k.startswith(prefix) and k not in keep]:
            del self._said[key]


class ModelControl:
    """Loads, unloads and reloads the models of ``registry`` from the store, with ``loader``:
    the one start-up loaded them with."""

    def __init__(self, registry: Registry, loader: ModelLoader) -> None:
        self.registry, self.loader = registry, loader
        self._locks: dict[str, asyncio.Lock] = {}
        self._tried: dict[str, Fingerprint] = {}
        self._checked: dict[str, tuple[int | None, Fingerprint]] = {}
        """The serving version's files as last checked, by model name."""
        self._log = LogOnce()

    async def apply(self, name: str, action: Action) -> ModelChange:
        """Load the store's newest version of ``name`` (``reload``: even if it is the one serving;
        ``load``: nothing to do if it already does), or ``unload`` it."""
        if action is Action.UNLOAD:
            return await self.unload(name)
        try:
            return await self._replace(name, action)
        except ModelLoadFailed as exc:
            log.error("%s: %s", action, exc.message)
            raise

    async def unload(self, name: str) -> ModelChange:
        """Stop serving ``name``; requests already running on it finish."""
        async with self._lock(name):
            previous = self.registry.get(name)
            if previous.state is ModelState.UNLOADED:
                return ModelChange(name, Action.UNLOAD, previous, previous, False, 0.0)
            current = LoadedModel(
                name,
                ModelState.UNLOADED,
                "unloaded by an admin",
                card=previous.card,
                family=previous.family,
            )
            self.registry.swap(current)
            log.info("%s v%s unloaded", name, previous.version)
            await _retire(previous)
            return ModelChange(name, Action.UNLOAD, previous, current, True, 0.0)

    async def watch(self, interval: float) -> None:
        """Every ``interval`` seconds, load new models and new versions (runs until cancelled).

        A model an admin unloaded stays unloaded; a version that failed to load is tried again
        only once its files change. What goes wrong is logged once, not once per look."""
        loader = self.loader
        try:
            entries = await anyio.to_thread.run_sync(loader.entries)
        except OSError:
            entries = {}  # the store cannot be read: the first poll says so
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
            except Exception as exc:
                failure = f"watching the model store failed: {type(exc).__name__}: {exc}"
                self._log.problem("watch", failure, logging.ERROR, exc_info=True)
            else:
                self._log.over("watch", "watching the model store works again")

    async def poll(self) -> list[ModelChange]:
        """One look at the store: load what is new, return what changed; then check that the
        serving versions' files are still those in memory (they keep serving either way)."""
        loader = self.loader
        try:
            entries = await anyio.to_thread.run_sync(loader.entries)
        except OSError as exc:
            self._store_unreadable(loader.store, exc)
            return []
        self._log.over("store", f"the model store {loader.store} can be read again")
        changes = []
        for name, entry in entries.items():
            mark = await anyio.to_thread.run_sync(_fingerprint, loader.store, entry)
            if self._tried.get(name) == mark or not _is_news(entry, self.registry.models.get(name)):
                continue
            self._tried[name] = mark
            try:
                changes.append(await self._replace(name, Action.LOAD))
            except ModelLoadFailed as exc:  # said once, however many times its files change
                self._log.problem(f"load:{name}", f"watch: {exc.message}", logging.ERROR)
            else:
                self._log.over(f"load:{name}")
        await self._check_serving(loader.store)
        return changes

    def _store_unreadable(self, root: Path, exc: OSError) -> None:
        """Say so once, and on every serving model; they keep serving."""
        why = f"the model store {root} cannot be read ({type(exc).__name__})"
        self._log.problem("store", f"{why}; the models loaded keep serving from memory")
        for model in self.registry.models.values():
            if model.state is ModelState.READY:
                model.reason = f"serving from memory: {why}"
        self._checked.clear()  # once it is back, every serving version is checked again

    async def _check_serving(self, root: Path) -> None:
        """Note on each serving model (its ``reason``, in /health/ready) and log once when its
        version's card or files in the store are gone or changed, and when they are back."""
        if not await anyio.to_thread.run_sync(root.is_dir):
            return  # gone since this look began: the next one says so, once
        serving = {n: m for n, m in self.registry.models.items() if m.state is ModelState.READY}
        keys = set()
        for name, model in serving.items():
            card = model.card
            if card is None:
                continue
            label = f"{name} v{card.version}"
            keys.add(key := f"serving:{label}")
            mark = await anyio.to_thread.run_sync(_serving_fingerprint, root, card)
            if self._checked.get(name) == (card.version, mark):
                continue
            problem = await anyio.to_thread.run_sync(_serving_problem, root, card)
            self._checked[name] = (card.version, mark)
            if problem is None:
                model.reason = None
                self._log.over(key, f"{label}: its files in the store match again")
            else:
                model.reason = f"serving from memory; in the store: {problem}"
                self._log.problem(
                    key, f"{label} keeps serving from memory; in the store: {problem}"
                )
        self._log.forget(keys, "serving:")
        for name in set(self._checked) - set(serving):
            del self._checked[name]

    async def _replace(self, name: str, action: Action) -> ModelChange:
        loader = self.loader
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
            loaded = await anyio.to_thread.run_sync(partial(loader.load, entry, True, report=False))
            seconds = time.perf_counter() - started
            if loaded.state is ModelState.READY:
                self.registry.swap(loaded)
                self._checked.pop(name, None)
                log.info(
                    "%s: v%s serving in place of v%s (loaded in %.2f s)",
                    name, loaded.version, previous.version if previous else None, seconds,
                )  # fmt: skip
                if previous is not None:
                    await _retire(previous)
                return ModelChange(name, action, previous, loaded, True, seconds)
            number = loaded.version or entry.version
            version = f" v{number}" if number else ""
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

    async def _entry(self, loader: ModelLoader, name: str) -> StoreEntry:
        try:
            entries = await anyio.to_thread.run_sync(loader.entries)
        except OSError as exc:
            previous = self.registry.models.get(name)
            serving = (
                f", v{previous.version} keeps serving"
                if previous is not None and previous.state is ModelState.READY
                else ""
            )
            raise ModelLoadFailed(
                f"{name} did not load{serving}: the model store cannot be read "
                f"({type(exc).__name__})"
            ) from exc
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


def _serving_fingerprint(root: Path, card: ModelCard) -> Fingerprint:
    """Path, mtime and size of a version's card and of every file it lists; -1 if missing."""
    marks = []
    for name in (card_file(card.name, card.version), *sorted(card.files)):
        try:
            stat = (root / name).stat()
        except OSError:
            marks.append((name, -1, -1))
        else:
            marks.append((name, stat.st_mtime_ns, stat.st_size))
    return tuple(marks)


def _serving_problem(root: Path, card: ModelCard) -> str | None:
    """What is wrong with the store's copy of a serving version, or None: its card must still
    read, and its files must still be the bytes in memory (the serving card's sha256)."""
    try:
        read_card(StoreEntry(card.name, root / card_file(card.name, card.version)))
        verify_files(root, card)
    except StoreError as exc:
        return exc.message
    except (OSError, UnicodeDecodeError) as exc:
        return f"{card.name}: a file of the model cannot be read ({type(exc).__name__})"
    return None


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

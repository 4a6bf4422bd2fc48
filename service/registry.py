"""Name → loaded model, with its state and reason, and the default model per operation."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from service.batching import BatchObserver, BatchPolicy
from service.config import Settings
from service.errors import (
    ModelNotFound,
    ModelNotReady,
    ServiceError,
    StoreError,
    UnsupportedOperation,
)
from service.families import FAMILIES, Family, Operation
from service.runtime import Graph, RunObserver, SessionTuning, choose_providers, open_graph
from service.sampling_times import SamplingTimes
from service.store import ModelCard, StoreEntry, discover, read_card, verify_files

log = logging.getLogger(__name__)


class ModelState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"
    """A family this service does not serve (e.g. the project classifier); not an error."""
    UNLOADED = "unloaded"
    """Taken out of service by an admin; not an error either."""


class UnsupportedFamily(ServiceError):
    code = "unsupported_family"


@dataclass
class LoadedModel:
    name: str
    state: ModelState = ModelState.LOADING
    reason: str | None = None
    card: ModelCard | None = None
    graphs: dict[str, Graph] = field(default_factory=dict)
    sampling_times: SamplingTimes = field(default_factory=SamplingTimes)

    @property
    def version(self) -> int | None:
        return self.card.version if self.card else None

    @property
    def family(self) -> Family | None:
        return FAMILIES.get(self.card.family) if self.card else None

    @property
    def operations(self) -> list[Operation]:
        family = self.family
        return sorted(family.operations) if family else []

    @property
    def providers(self) -> dict[str, str]:
        return {role: graph.provider for role, graph in self.graphs.items()}

    @property
    def provider(self) -> str | None:
        """The provider in use, or "mixed" if the graphs disagree."""
        found = set(self.providers.values())
        return found.pop() if len(found) == 1 else ("mixed" if found else None)

    @property
    def ready_card(self) -> ModelCard:
        """The card of a model that serves; ModelNotReady otherwise."""
        if self.state is not ModelState.READY or self.card is None:
            raise ModelNotReady(f"model {self.name!r} is not ready: {self.reason or self.state}")
        return self.card

    def supports(self, operation: Operation) -> bool:
        return operation in self.operations


ModelSubscriber = Callable[[LoadedModel], None]
"""Called with the model swapped in, whenever one is."""


class Registry:
    def __init__(
        self,
        models: Mapping[str, LoadedModel],
        defaults: Mapping[str, str],
        loader: ModelLoader | None = None,
    ) -> None:
        self.models = dict(sorted(models.items()))
        self.defaults = dict(defaults)
        self.loaded = False
        self.loader = loader
        self.subscribers: list[ModelSubscriber] = []

    def swap(self, model: LoadedModel) -> LoadedModel | None:
        """Put ``model`` in place of the one of its name, at once; return the one it replaced.

        ``models`` is rebound, never changed in place, so that whoever iterates it meanwhile
        sees either the old mapping or the new one. Requests that already took the previous
        model keep it and finish on it."""
        previous = self.models.get(model.name)
        self.models = dict(sorted({**self.models, model.name: model}.items()))
        for subscriber in self.subscribers:
            subscriber(model)
        return previous

    @property
    def ready(self) -> bool:
        """Loaded, serving at least one model, and no model failed."""
        states = [m.state for m in self.models.values()]
        return self.loaded and ModelState.READY in states and ModelState.FAILED not in states

    async def close(self) -> None:
        """Drain every graph's batch queue (requests in flight finish), then stop its worker."""
        for model in self.models.values():
            for graph in model.graphs.values():
                await graph.close()

    def get(self, name: str) -> LoadedModel:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(self.models) or "none"
            raise ModelNotFound(f"model {name!r} not found (known models: {known})") from None

    def capable(self, operation: Operation) -> list[str]:
        return [
            name
            for name, m in self.models.items()
            if m.state is ModelState.READY and operation in m.operations
        ]

    def resolve(self, name: str | None, operation: Operation) -> LoadedModel:
        """The model to run ``operation`` on: the named one, the configured default, or the
        first ready model (by name) that supports it."""
        capable = self.capable(operation)
        name = name or self.defaults.get(operation) or (capable[0] if capable else None)
        if name is None:
            raise UnsupportedOperation(f"no ready model supports {operation}")
        model = self.get(name)
        family = model.family
        if model.state is ModelState.FAILED or model.supports(operation):
            _ = model.ready_card  # a failed model raises ModelNotReady (503), saying why
            return model
        why = (family.why_not.get(operation) if family else None) or model.reason
        kind = model.card.family if model.card else "unknown"
        raise UnsupportedOperation(
            f"model {name!r} (family {kind}) cannot {operation}"
            + (f": {why}" if why else "")
            + f"; models that can: {', '.join(capable) or 'none'}"
        )


@dataclass(frozen=True)
class Observers:
    runs: RunObserver | None = None
    batches: BatchObserver | None = None


@dataclass(frozen=True)
class ModelLoader:
    """Loads one model of the store as start-up did: same settings, providers and observers."""

    settings: Settings
    providers: list[str]
    observers: Observers

    def entries(self) -> dict[str, StoreEntry]:
        """The store's models as they are now, by name."""
        return {entry.name: entry for entry in discover(self.settings.model_store)}

    def load(self, entry: StoreEntry, warm_up: bool | None = None) -> LoadedModel:
        """Blocking (reads files, opens sessions): call it off the event loop."""
        warm = self.settings.warmup if warm_up is None else warm_up
        return _load_one(entry, self.settings, self.providers, self.observers, warm)


def load_registry(settings: Settings, observers: Observers | None = None) -> Registry:
    """Load every model of the store. A model that fails is marked failed; the rest still load."""
    providers = choose_providers(settings.device, settings.ort_log_severity)
    loader = ModelLoader(settings, providers, observers or Observers())
    models = {name: loader.load(entry) for name, entry in loader.entries().items()}
    defaults = {op.value: settings.default_model(op.value) for op in Operation}
    registry = Registry(models, {op: name for op, name in defaults.items() if name}, loader)
    for op, name in registry.defaults.items():
        if name not in registry.models:
            known = ", ".join(registry.models) or "none"
            raise StoreError(
                f"SERVICE_DEFAULT_{op.upper()}_MODEL={name!r} is not in the store (models: {known})"
            )
    registry.loaded = True
    return registry


def _load_one(
    entry: StoreEntry,
    settings: Settings,
    providers: list[str],
    observers: Observers,
    warm_up: bool,
) -> LoadedModel:
    model = LoadedModel(entry.name)
    try:
        model.card = card = read_card(entry)
        family = FAMILIES.get(card.family)
        if family is None:
            raise UnsupportedFamily(f"family {card.family!r} is not served by this service")
        missing = [g for g in family.graphs if g not in card.graphs]
        if missing:
            raise ServiceError(f"{entry.name}: card lacks graph(s) {missing} for {card.family}")
        if family.pixel_graph is not None:
            _check_mixture(card, family.pixel_graph)
        if family.conditional and not card.class_names:
            raise ServiceError(f"{entry.name}: a {card.family} card needs its class_names")
        if card.image_shape[0] != 1:
            raise ServiceError(f"{entry.name}: only 1-channel images are served")
        verify_files(entry.folder, card)
        batching = batch_policy(settings)
        if family.autoregressive:  # one run at a time, on every core: the sampler's way too
            batching = replace(batching, instances=1)
        model.graphs = {
            role: _open(entry.folder, card, role, settings, providers, observers, batching)
            for role in (*family.graphs, *(g for g in family.optional_graphs if g in card.graphs))
        }
        if warm_up:
            for graph in model.graphs.values():
                graph.warm_up(card.image_shape)
        model.state = ModelState.READY
        if model.provider != providers[0]:
            log.warning("%s asked for %s but got %s", entry.name, providers[0], model.provider)
        log.info("%s v%s ready on %s", entry.name, card.version, model.provider)
    except UnsupportedFamily as exc:
        model.state, model.reason = ModelState.UNSUPPORTED, exc.message
        log.warning("model %s skipped: %s", entry.name, exc.message)
    except ServiceError as exc:
        model.state, model.reason = ModelState.FAILED, exc.message
        log.error("model %s failed: %s", entry.name, exc.message)
    except (OSError, UnicodeDecodeError) as exc:
        model.state = ModelState.FAILED
        model.reason = f"{entry.name}: a file of the model cannot be read ({type(exc).__name__})"
        log.error("model %s failed: %s", entry.name, exc)
    except Exception:
        model.state, model.reason = ModelState.FAILED, "failed to load (see server log)"
        log.exception("model %s failed to load", entry.name)
    return model


def _check_mixture(card: ModelCard, graph: str) -> None:
    """An autoregressive card must declare the mixture its params channels hold
    (docs/model-store.md)."""
    likelihood = card.likelihood
    if likelihood is None or likelihood.kind != "discretized_logistic_mixture":
        raise ServiceError(
            f"{card.name}: a {card.family} card needs "
            "likelihood.kind 'discretized_logistic_mixture'"
        )
    channels = card.graphs[graph].outputs[0].shape[1]
    if channels not in (-1, 3 * likelihood.components):
        raise ServiceError(
            f"{card.name}: params has {channels} channels, expected 3 x {likelihood.components}"
        )


def batch_policy(settings: Settings) -> BatchPolicy:
    return BatchPolicy(
        max_batch=settings.batch_max_size,
        max_delay=settings.batch_max_delay_us / 1e6,
        queue_limit=settings.batch_queue_limit,
        instances=settings.batch_instances,
        queue_timeout=settings.queue_timeout_ms / 1000,
    )


def _open(
    folder: Path,
    card: ModelCard,
    role: str,
    settings: Settings,
    providers: list[str],
    observers: Observers,
    batching: BatchPolicy,
) -> Graph:
    threads = settings.intra_op_threads
    if threads == 0 and batching.instances > 1:  # the batch instances share the cores
        threads = max(1, len(os.sched_getaffinity(0)) // batching.instances)
    tuning = SessionTuning(threads, settings.ort_spinning, settings.ort_log_severity)
    return open_graph(
        card.name,
        role,
        card.graphs[role],
        folder,
        providers,
        tuning,
        observers.runs,
        batching,
        observers.batches,
    )

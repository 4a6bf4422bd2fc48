"""Name → loaded model, with its state and reason, and the default model per operation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from service.config import Settings
from service.errors import (
    ModelNotFound,
    ModelNotReady,
    ServiceError,
    StoreError,
    UnsupportedOperation,
)
from service.families import FAMILIES, Family, Operation
from service.runtime import Graph, RunObserver, choose_providers, open_graph
from service.store import ModelCard, StoreEntry, discover, read_card, verify_files

log = logging.getLogger(__name__)


class ModelState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"
    """A family this service does not serve (e.g. the project classifier); not an error."""


class UnsupportedFamily(ServiceError):
    code = "unsupported_family"


@dataclass
class LoadedModel:
    name: str
    state: ModelState = ModelState.LOADING
    reason: str | None = None
    card: ModelCard | None = None
    graphs: dict[str, Graph] = field(default_factory=dict)

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


class Registry:
    def __init__(self, models: Mapping[str, LoadedModel], defaults: Mapping[str, str]) -> None:
        self.models = dict(sorted(models.items()))
        self.defaults = dict(defaults)
        self.loaded = False

    @property
    def ready(self) -> bool:
        """Loaded, serving at least one model, and no model failed."""
        states = [m.state for m in self.models.values()]
        return self.loaded and ModelState.READY in states and ModelState.FAILED not in states

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


def load_registry(settings: Settings, observer: RunObserver | None = None) -> Registry:
    """Load every model of the store. A model that fails is marked failed; the rest still load."""
    providers = choose_providers(settings.device, settings.ort_log_severity)
    models = {}
    for entry in discover(settings.model_store):
        models[entry.name] = _load_one(entry, settings, providers, observer)
    defaults = {op.value: settings.default_model(op.value) for op in Operation}
    registry = Registry(models, {op: name for op, name in defaults.items() if name})
    for op, name in registry.defaults.items():
        if name not in registry.models:
            known = ", ".join(registry.models) or "none"
            raise StoreError(
                f"SERVICE_DEFAULT_{op.upper()}_MODEL={name!r} is not in the store (models: {known})"
            )
    registry.loaded = True
    return registry


def _load_one(
    entry: StoreEntry, settings: Settings, providers: list[str], observer: RunObserver | None
) -> LoadedModel:
    model = LoadedModel(entry.name)
    try:
        model.card = card = read_card(entry)
        assert entry.version_dir is not None  # read_card refuses a model without one
        family = FAMILIES.get(card.family)
        if family is None:
            raise UnsupportedFamily(f"family {card.family!r} is not served by this service")
        missing = [g for g in family.graphs if g not in card.graphs]
        if missing:
            raise ServiceError(f"{entry.name}: card lacks graph(s) {missing} for {card.family}")
        if family.autoregressive:
            _check_mixture(card)
        if card.image_shape[0] != 1:
            raise ServiceError(f"{entry.name}: only 1-channel images are served")
        verify_files(entry.version_dir, card)
        model.graphs = {
            role: _open(entry.version_dir, card, role, settings, providers, observer)
            for role in family.graphs
        }
        if settings.warmup:
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
    except Exception:
        model.state, model.reason = ModelState.FAILED, "failed to load (see server log)"
        log.exception("model %s failed to load", entry.name)
    return model


def _check_mixture(card: ModelCard) -> None:
    """A PixelCNN card must declare the mixture its params channels hold (docs/model-store.md)."""
    likelihood = card.likelihood
    if likelihood is None or likelihood.kind != "discretized_logistic_mixture":
        raise ServiceError(
            f"{card.name}: a {card.family} card needs "
            "likelihood.kind 'discretized_logistic_mixture'"
        )
    channels = card.graphs["pixelcnn"].outputs[0].shape[1]
    if channels not in (-1, 3 * likelihood.components):
        raise ServiceError(
            f"{card.name}: params has {channels} channels, expected 3 x {likelihood.components}"
        )


def _open(
    folder: Path,
    card: ModelCard,
    role: str,
    settings: Settings,
    providers: list[str],
    observer: RunObserver | None,
) -> Graph:
    return open_graph(
        card.name,
        role,
        card.graphs[role],
        folder,
        providers,
        settings.intra_op_threads,
        settings.ort_log_severity,
        observer,
    )

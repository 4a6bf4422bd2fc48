"""Name → loaded model, with its state and reason, and the default model per operation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from modelstore.card import ModelCard
from service.errors import ModelNotFound, ModelNotReady, UnsupportedOperation
from service.registry.families import Family, Operation
from service.registry.sampling_times import SamplingTimes
from service.runtime.sessions import Graph


class ModelState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"
    """A family this service does not serve (e.g. the project classifier); not an error."""
    UNLOADED = "unloaded"
    """Taken out of service by an admin; not an error either."""


@dataclass
class LoadedModel:
    name: str
    state: ModelState = ModelState.LOADING
    reason: str | None = None
    card: ModelCard | None = None
    graphs: dict[str, Graph] = field(default_factory=dict)
    sampling_times: SamplingTimes = field(default_factory=SamplingTimes)
    family: Family | None = None
    """Its card's family, when the service serves it (set as the card is read)."""

    @property
    def version(self) -> int | None:
        return self.card.version if self.card else None

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
        family = self.family
        return family is not None and operation in family.operations


class Registry:
    def __init__(self, models: Mapping[str, LoadedModel], defaults: Mapping[str, str]) -> None:
        self.models = dict(sorted(models.items()))
        self.defaults = dict(defaults)
        self.loaded = False

    def swap(self, model: LoadedModel) -> LoadedModel | None:
        """Put ``model`` in place of the one of its name, at once; return the one it replaced.

        ``models`` is rebound, never changed in place, so that whoever iterates it meanwhile
        sees either the old mapping or the new one. Requests that already took the previous
        model keep it and finish on it."""
        previous = self.models.get(model.name)
        self.models = dict(sorted({**self.models, model.name: model}.items()))
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
        if name is None:
            name = self.defaults.get(operation)
        if name is None:
            capable = self.capable(operation)
            if not capable:
                raise UnsupportedOperation(f"no ready model supports {operation}")
            name = capable[0]
        model = self.get(name)
        family = model.family
        if model.state is ModelState.FAILED or model.supports(operation):
            _ = model.ready_card  # a failed model raises ModelNotReady (503), saying why
            return model
        capable = self.capable(operation)
        why = (family.why_not.get(operation) if family else None) or model.reason
        kind = model.card.family if model.card else "unknown"
        raise UnsupportedOperation(
            f"model {name!r} (family {kind}) cannot {operation}"
            + (f": {why}" if why else "")
            + f"; models that can: {', '.join(capable) or 'none'}"
        )

"""Loading a store's models: each card checked against its family and its files, each graph
opened in onnxruntime behind its batcher, and warmed up. A model that fails is marked failed,
saying why; the others still load."""

from __future__ import annotations

import glob
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from modelstore.card import ModelCard
from modelstore.checksums import verify_files
from modelstore.discovery import StoreEntry, discover, read_card
from modelstore.errors import StoreError
from service.errors import ServiceError
from service.registry.families import Family
from service.registry.registry import LoadedModel, ModelState, Registry
from service.runtime.sessions import Graph, GraphOptions, open_graph

log = logging.getLogger(__name__)


class UnsupportedFamily(ServiceError):
    code = "unsupported_family"


@dataclass(frozen=True)
class LoadOptions:
    """Everything loading needs, built once from the settings."""

    store: Path
    graphs: GraphOptions
    """For the batched graphs."""
    autoregressive_graphs: GraphOptions
    """For the pixel-by-pixel families: one run at a time, on every core (the sampler's way)."""
    warm_up: bool = True
    """Run every graph once before the model is ready."""
    families: Mapping[str, Family] = field(default_factory=dict)
    """The families the service serves, by a card's ``family`` (generation/families.py)."""


@dataclass(frozen=True)
class ModelLoader:
    """Loads one model of the store as start-up did: same options, providers and observers."""

    options: LoadOptions

    @property
    def store(self) -> Path:
        return self.options.store

    def entries(self) -> dict[str, StoreEntry]:
        """The store's models as they are now, by name."""
        return {entry.name: entry for entry in discover(self.options.store)}

    def load(
        self, entry: StoreEntry, warm_up: bool | None = None, report: bool = True
    ) -> LoadedModel:
        """Blocking (reads files, opens sessions): call it off the event loop. ``report``: log
        why a model failed (off when the caller reports it)."""
        warm = self.options.warm_up if warm_up is None else warm_up
        model = LoadedModel(entry.name)
        try:
            model.card = card = read_card(entry)
            model.family = self.options.families.get(card.family)
            model.graphs = self._open(entry, card, model.family)
            if warm:
                for graph in model.graphs.values():
                    graph.warm_up(card.image_shape)
            model.state = ModelState.READY
            wanted = self.options.graphs.providers[0]
            if model.provider != wanted:
                log.warning("%s asked for %s but got %s", entry.name, wanted, model.provider)
            log.info("%s v%s ready on %s", entry.name, card.version, model.provider)
        except UnsupportedFamily as exc:
            model.state, model.reason = ModelState.UNSUPPORTED, exc.message
            if report:
                log.warning("model %s skipped: %s", entry.name, exc.message)
        except (ServiceError, StoreError) as exc:
            model.state, model.reason = ModelState.FAILED, exc.message
            if report:
                log.error("model %s failed: %s", entry.name, exc.message)
        except (OSError, UnicodeDecodeError) as exc:
            model.state = ModelState.FAILED
            model.reason = (
                f"{entry.name}: a file of the model cannot be read ({type(exc).__name__})"
            )
            if report:
                log.error("model %s failed: %s", entry.name, exc)
        except Exception:
            model.state, model.reason = ModelState.FAILED, "failed to load (see server log)"
            log.exception("model %s failed to load", entry.name)
        return model

    def _open(self, entry: StoreEntry, card: ModelCard, family: Family | None) -> dict[str, Graph]:
        """Check the card against its family and its files, then open its graphs."""
        if family is None:
            raise UnsupportedFamily(f"family {card.family!r} is not served by this service")
        missing = [g for g in family.graphs if g not in card.graphs]
        if missing:
            raise ServiceError(f"{entry.name}: card lacks graph(s) {missing} for {card.family}")
        family.check_card(card)
        verify_files(entry.folder, card)
        options = family.graph_options(self.options.graphs, self.options.autoregressive_graphs)
        return {
            role: open_graph(card.name, role, card.graphs[role], entry.folder, options)
            for role in family.roles(card)
        }


def load_registry(loader: ModelLoader, defaults: Mapping[str, str], threads: int = 1) -> Registry:
    """Load every model of the store, ``threads`` at a time (onnxruntime builds sessions without
    the GIL), the largest first so that it does not finish last; and check that each
    operation's default model is one."""
    entries = loader.entries()
    largest_first = sorted(entries.values(), key=_bytes_of_graphs, reverse=True)
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="load") as pool:
        loaded = dict(zip(
            (entry.name for entry in largest_first),
            pool.map(loader.load, largest_first),
            strict=True,
        ))  # fmt: skip
    models = {name: loaded[name] for name in entries}
    registry = Registry(models, defaults)
    for op, name in registry.defaults.items():
        if name not in registry.models:
            known = ", ".join(registry.models) or "none"
            raise StoreError(
                f"SERVICE_DEFAULT_{op.upper()}_MODEL={name!r} is not in the store (models: {known})"
            )
    registry.loaded = True
    return registry


def _bytes_of_graphs(entry: StoreEntry) -> int:
    """The size of an entry's ONNX files: what its loading costs, roughly."""
    if entry.card_path is None or entry.version is None:
        return 0
    pattern = f"{glob.escape(entry.name)}.*/{entry.version}/*.onnx"
    try:
        return sum(path.stat().st_size for path in entry.folder.glob(pattern))
    except OSError:
        return 0

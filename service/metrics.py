"""Prometheus metrics, in a CollectorRegistry of their own so that several apps can coexist.

With several worker processes (PROMETHEUS_MULTIPROC_DIR set, ``python -m service`` does it),
every value lives in prometheus-client's files in that folder and a scrape of any worker sums
them all: counters and histograms over every worker that ever ran, the in-flight and queue
gauges over the live ones. The models' readiness and providers are not stored values: they are
read at each scrape from ``model_states`` (the service's, across its workers), so a model that
is not served simply has no series.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

# 0.5 ms .. 30 s, roughly x2.5 per bucket.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_CLASSES = ("interactive", "bulk")
"""service.runtime.batching.RequestClass's values."""
STOP_REASONS = ("deadline", "disconnect")
"""Why a request's work was stopped: its timeout_ms passed, or its client left."""


@dataclass(frozen=True)
class ModelSeries:
    name: str
    version: int | None
    ready: bool
    providers: dict[str, str]
    """Graph role -> execution provider."""


class _ModelStates(Collector):
    """genserve_model_ready and genserve_provider_info, as the service is at the scrape."""

    def __init__(self, source: Callable[[], Iterable[ModelSeries]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(
            "genserve_model_ready",
            "1 if the model is loaded and serving (in every worker), else 0.",
            labels=["model", "version"],
        )
        providers = GaugeMetricFamily(
            "genserve_provider_info",
            "Execution provider each graph really got (value is always 1).",
            labels=["model", "graph", "provider"],
        )
        for model in self.source():
            ready.add_metric([model.name, str(model.version or "")], 1.0 if model.ready else 0.0)
            for role, provider in model.providers.items():
                providers.add_metric([model.name, role, provider], 1.0)
        yield ready
        yield providers


class Metrics:
    def __init__(self) -> None:
        self.folder = os.environ.get(MULTIPROCESS_ENV) or None
        self.registry = CollectorRegistry(auto_describe=True)
        self.model_states: Callable[[], Iterable[ModelSeries]] = list
        """Set by the app once its models load."""
        self._states = _ModelStates(lambda: self.model_states())
        self.request_duration = Histogram(
            "genserve_request_duration_seconds",
            "HTTP request latency, by model, operation and status code.",
            ["model", "operation", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.onnx_run = Histogram(
            "genserve_onnx_run_seconds",
            "Time spent in one onnxruntime run, by model and graph role.",
            ["model", "graph"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter(
            "genserve_images",
            "Images produced, by model and operation.",
            ["model", "operation"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "genserve_requests_in_flight",
            "HTTP requests being served.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "genserve_batch_size",
            "Rows (images or latents) in one batched onnxruntime run, by model and graph role.",
            ["model", "graph"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "genserve_batch_requests",
            "Requests coalesced into one batched run, by model and graph role.",
            ["model", "graph"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait_seconds = Histogram(
            "genserve_queue_wait_seconds",
            "Time a request waited in a graph's batch queue before its run started.",
            ["model", "graph"],
            buckets=(0.0001, 0.00025, *LATENCY_BUCKETS),
            registry=self.registry,
        )
        self.class_queue_wait = Histogram(
            "genserve_class_queue_wait_seconds",
            "Time a request waited in a graph's batch queue before its first rows ran, by its "
            "class (interactive or bulk).",
            ["model", "graph", "class"],
            buckets=(0.0001, 0.00025, *LATENCY_BUCKETS),
            registry=self.registry,
        )
        self.class_rows = Counter(
            "genserve_class_rows",
            "Rows (images or latents) run through a batched graph, by the class of the request "
            "they belong to (interactive or bulk).",
            ["model", "graph", "class"],
            registry=self.registry,
        )
        self.queue_depth_gauge = Gauge(
            "genserve_queue_depth",
            "Requests left waiting in a graph's batch queue when the last batch started.",
            ["model", "graph"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.rejections = Counter(
            "genserve_rejected_requests",
            "Requests refused with 503 because a graph's batch queue was full or they waited "
            "in it too long.",
            ["model", "graph"],
            registry=self.registry,
        )
        self.cancelled = Counter(
            "genserve_cancelled_requests",
            "Requests whose work was stopped before their answer: the client went away "
            "(disconnect) or their timeout_ms passed (deadline).",
            ["model", "operation", "reason"],
            registry=self.registry,
        )
        self.cancelled_rows = Counter(
            "genserve_cancelled_work_rows",
            "Rows of pixel-by-pixel drawing done for requests that were then stopped.",
            ["model", "operation"],
            registry=self.registry,
        )
        self.discarded_rows = Counter(
            "genserve_discarded_batch_rows",
            "Rows (images or latents) a batched run computed for a request whose client had "
            "gone meanwhile.",
            ["model", "graph"],
            registry=self.registry,
        )
        self.key_requests = Counter(
            "genserve_api_key_requests",
            "Requests let through by API key, by the key's name (never the key).",
            ["key"],
            registry=self.registry,
        )
        self.auth_refusals = Counter(
            "genserve_auth_refusals",
            "Requests refused before any route: 401 (no key or a wrong one), 429 (a key past "
            "its rate).",
            ["reason"],
            registry=self.registry,
        )
        if self.folder is None:
            self.registry.register(self._states)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, family: Counter | Histogram, *labels: str) -> Any:
        """``family.labels(*labels)``, looked up once: every run and batch observes several
        series, and prometheus-client's lookup takes a lock and builds the labels each time."""
        key = (id(family), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    def forget_dead_workers(self, alive: Callable[[int], bool]) -> None:
        """Drop the live gauges of worker processes that are gone (a restarted worker's
        predecessor), so that they stop counting in the in-flight and queue sums."""
        if self.folder is None:
            return
        pids = {int(p.stem.rsplit("_", 1)[-1]) for p in Path(self.folder).glob("gauge_live*_*.db")}
        for pid in pids:
            if not alive(pid):
                mark_process_dead(pid, self.folder)

    def observe_run(self, model: str, graph: str, seconds: float) -> None:
        self._child(self.onnx_run, model, graph).observe(seconds)

    def register(self, model: str, graph: str) -> None:
        """Create a batched graph's series at zero, so dashboards see them before traffic."""
        for family in (self.batch_size, self.batch_requests, self.queue_wait_seconds):
            family.labels(model, graph)
        self.queue_depth_gauge.labels(model, graph).set(0)
        for klass in REQUEST_CLASSES:
            self.class_queue_wait.labels(model, graph, klass)
            self.class_rows.labels(model, graph, klass)
        self.rejections.labels(model, graph)
        self.discarded_rows.labels(model, graph)

    def register_model(self, model: str, operations: Iterable[str], autoregressive: bool) -> None:
        """Create a model's series of stopped work at zero, so that their rates are 0, not
        missing, until something is stopped."""
        for operation in operations:
            for reason in STOP_REASONS:
                self.cancelled.labels(model, operation, reason)
            if autoregressive and operation in ("sample", "complete"):
                self.cancelled_rows.labels(model, operation)

    def batch_run(self, model: str, graph: str, rows: int, requests: int) -> None:
        self._child(self.batch_size, model, graph).observe(rows)
        self._child(self.batch_requests, model, graph).observe(requests)

    def queue_wait(self, model: str, graph: str, seconds: float) -> None:
        self._child(self.queue_wait_seconds, model, graph).observe(seconds)

    def class_served(
        self, model: str, graph: str, klass: str, rows: int, waited: float | None
    ) -> None:
        """Rows of a request of ``klass`` run; ``waited``: its queue wait, at its first rows."""
        self._child(self.class_rows, model, graph, klass).inc(rows)
        if waited is not None:
            self._child(self.class_queue_wait, model, graph, klass).observe(waited)

    def queue_depth(self, model: str, graph: str, depth: int) -> None:
        self.queue_depth_gauge.labels(model, graph).set(depth)

    def rejected(self, model: str, graph: str) -> None:
        self.rejections.labels(model, graph).inc()

    def discarded(self, model: str, graph: str, rows: int) -> None:
        self.discarded_rows.labels(model, graph).inc(rows)

    def stopped(self, model: str, operation: str, reason: str, rows: int) -> None:
        self.cancelled.labels(model, operation, reason).inc()
        if rows:
            self.cancelled_rows.labels(model, operation).inc(rows)

    def render(self) -> bytes:
        if self.folder is None:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, self.folder)
        every_worker.register(self._states)
        return generate_latest(every_worker)

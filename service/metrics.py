"""Prometheus metrics, in a CollectorRegistry of their own so that several apps can coexist."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# 0.5 ms .. 30 s, roughly x2.5 per bucket.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._model_series: dict[str, list[tuple[Gauge, tuple[str, ...]]]] = {}
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
            "genserve_requests_in_flight", "HTTP requests being served.", registry=self.registry
        )
        self.model_ready = Gauge(
            "genserve_model_ready",
            "1 if the model is loaded and serving, else 0.",
            ["model", "version"],
            registry=self.registry,
        )
        self.provider_info = Gauge(
            "genserve_provider_info",
            "Execution provider each graph really got (value is always 1).",
            ["model", "graph", "provider"],
            registry=self.registry,
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
        self.queue_depth_gauge = Gauge(
            "genserve_queue_depth",
            "Requests left waiting in a graph's batch queue when the last batch started.",
            ["model", "graph"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "genserve_rejected_requests",
            "Requests refused with 503 because a graph's batch queue was full or they waited "
            "in it too long.",
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

    def publish_model(
        self, name: str, version: str, ready: bool, providers: Mapping[str, str]
    ) -> None:
        """Replace the model's model_ready and provider_info series (after a load or reload)."""
        self.forget_model(name)
        self.model_ready.labels(name, version).set(1.0 if ready else 0.0)
        series: list[tuple[Gauge, tuple[str, ...]]] = [(self.model_ready, (name, version))]
        for role, provider in providers.items():
            self.provider_info.labels(name, role, provider).set(1.0)
            series.append((self.provider_info, (name, role, provider)))
        self._model_series[name] = series

    def forget_model(self, name: str) -> None:
        """Drop the model's series: a model that is not served exports none."""
        for gauge, labels in self._model_series.pop(name, []):
            with suppress(KeyError):
                gauge.remove(*labels)

    def observe_run(self, model: str, graph: str, seconds: float) -> None:
        self.onnx_run.labels(model, graph).observe(seconds)

    def register(self, model: str, graph: str) -> None:
        """Create a batched graph's series at zero, so dashboards see them before traffic."""
        for family in (self.batch_size, self.batch_requests, self.queue_wait_seconds):
            family.labels(model, graph)
        self.queue_depth_gauge.labels(model, graph).set(0)
        self.rejections.labels(model, graph)

    def batch_run(self, model: str, graph: str, rows: int, requests: int) -> None:
        self.batch_size.labels(model, graph).observe(rows)
        self.batch_requests.labels(model, graph).observe(requests)

    def queue_wait(self, model: str, graph: str, seconds: float) -> None:
        self.queue_wait_seconds.labels(model, graph).observe(seconds)

    def queue_depth(self, model: str, graph: str, depth: int) -> None:
        self.queue_depth_gauge.labels(model, graph).set(depth)

    def rejected(self, model: str, graph: str) -> None:
        self.rejections.labels(model, graph).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

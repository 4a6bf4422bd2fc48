"""Prometheus metrics, in a CollectorRegistry of their own so that several apps can coexist."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# 0.5 ms .. 30 s, roughly x2.5 per bucket.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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

    def observe_run(self, model: str, graph: str, seconds: float) -> None:
        self.onnx_run.labels(model, graph).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Service settings: one pydantic-settings class, read once, environment prefix ``SERVICE_``;
and ``ServiceConfig``, what they become for each layer.

The layers below are imported only where the settings become their configuration: reading
the settings imports neither onnxruntime nor numpy, so ``python -m service``'s supervisor,
which starts the workers, stays small (docs/performance.md)."""

from __future__ import annotations

import importlib.util
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from service.generation.specs import Limits
    from service.registry.loader import LoadOptions
    from service.runtime.batching import BatchObserver, BatchPolicy, RequestClass
    from service.runtime.sessions import RunObserver, SessionTuning

BUNDLED_STORE = Path(__file__).resolve().parent.parent / "model_store"

Device = Literal["auto", "cpu", "cuda"]
HTTPServer = Literal["granian", "uvicorn"]
ReadinessPolicy = Literal["any", "strict"]
"""service.registry.fleet.Readiness's values."""
QueuePolicy = Literal["classes", "arrival"]
"""service.runtime.batching.QueuePolicy's values."""
RequestClassName = Literal["interactive", "bulk"]
"""service.runtime.batching.RequestClass's values."""
MIN_TOKEN_LENGTH = 16
Count = Annotated[int, Field(ge=1, le=4096)]
"""A number of images or rows: 1 to 4096."""
Parallel = Annotated[int, Field(ge=1, le=64)]
"""How many run at once: 1 to 64."""
KEY_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""An API key's name: what metrics and logs show instead of the key."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVICE_", protected_namespaces=(), frozen=True)

    model_store: Path = Field(
        default=BUNDLED_STORE, description="A Triton model repository with genserve cards."
    )
    device: Device = Field(default="auto", description="auto prefers CUDA and falls back to CPU.")
    intra_op_threads: NonNegativeInt = Field(
        default=0,
        description="onnxruntime intra-op threads per session; 0 = cores / batch instances "
        "for batched graphs, onnxruntime's choice for the autoregressive families.",
    )
    ort_log_severity: int = Field(
        default=3, ge=0, le=4, description="onnxruntime log level (3=error)."
    )
    ort_spinning: bool = Field(
        default=False, description="Let onnxruntime threads busy-wait between runs."
    )
    warmup: bool = Field(default=True, description="Run every graph once at start-up.")
    workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Worker processes of `python -m service`, on one port; 0 = the cores this "
        "process may use (the cgroup CPU quota in a container, else its CPU affinity).",
    )
    http_server: HTTPServer = Field(
        default="uvicorn",
        description="The HTTP server of `python -m service`: uvicorn, or granian (HTTP parsed "
        "in Rust; `pip install genserve[granian]`). bench/throughput.py measures both.",
    )
    readiness: ReadinessPolicy = Field(
        default="any",
        description="When /health/ready answers 200: 'any' once one model at least serves (a "
        "model that failed shows, and does not take the others out of service); 'strict' only "
        "when every model that should serve does.",
    )
    batch_max_size: Count = Field(
        default=64, description="Most images in one batched onnxruntime run."
    )
    batch_max_delay_us: int = Field(
        default=0, ge=0, le=1_000_000, description="Microseconds a batch may wait to fill up."
    )
    batch_instances: Parallel = Field(
        default=2, description="Batches of one graph that may run at once."
    )
    batch_queue_limit: int = Field(
        default=256, ge=1, description="Requests queued per graph before 503 + Retry-After."
    )
    queue_timeout_ms: NonNegativeInt = Field(
        default=10_000,
        description="Most milliseconds a request waits for its run before 503 + Retry-After; "
        "0 = no limit.",
    )
    queue_policy: QueuePolicy = Field(
        default="classes",
        description="How a graph's queue is served: 'classes' runs interactive requests first "
        "and bulk ones in pieces, with a guaranteed share; 'arrival' in arrival order, each "
        "request whole (docs/performance.md).",
    )
    interactive_max_images: Count = Field(
        default=4,
        description="A request of at most this many images (rows) is interactive, unless its "
        "X-Request-Class header or its API key says otherwise; the rest are bulk.",
    )
    bulk_chunk_images: Count = Field(
        default=16,
        description="Images (rows) of bulk work in one run while interactive requests come (one "
        "in the last SERVICE_INTERACTIVE_WINDOW_MS): the most an interactive request waits "
        "behind. At most SERVICE_BATCH_MAX_SIZE.",
    )
    interactive_window_ms: NonNegativeInt = Field(
        default=500,
        le=60_000,
        description="Milliseconds after an interactive request during which a graph's bulk work "
        "runs in pieces of SERVICE_BULK_CHUNK_IMAGES; with none that recent, a bulk run takes up "
        "to SERVICE_BATCH_MAX_SIZE images, as in arrival order. 0 = pieces only while an "
        "interactive request waits.",
    )
    bulk_share: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="The share of a graph's rows that bulk work keeps while interactive work "
        "waits too, so that it is never starved: above 0, at most 1.",
    )
    inline_max_images: int = Field(
        default=0,
        ge=0,
        le=4096,
        description="An interactive request of at most this many images that finds its graph "
        "idle runs at once in the event loop's thread, without the hand-off to the graph's "
        "worker thread and back: faster for a lone client, slower for a few at once, whose "
        "runs it puts in line on the event loop (docs/performance.md); 0 = never.",
    )
    api_key_classes: str | None = Field(
        default=None,
        description="Each API key's default request class, as name:class pairs separated by "
        "commas (e.g. batch-jobs:bulk,app1:interactive); a key not named has none.",
    )
    max_n: Count = Field(default=64, description="Largest n for /sample.")
    max_autoregressive_n: Count = Field(
        default=16, description="Largest n for PixelCNN and PixelRNN (capped by max_n)."
    )
    max_concurrent_autoregressive: Parallel = Field(
        default=1, description="PixelCNN and PixelRNN samplings that run at once; others queue."
    )
    stream_partial_rows: Count = Field(
        default=4, description="An event stream's partial images come every this many rows drawn."
    )
    max_images: Count = Field(default=64, description="Most input images per request.")
    max_iwae_k: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Largest k (importance samples per image) for /score on a VAE.",
    )
    max_iwae_samples: int = Field(
        default=6400,
        ge=1,
        description="Most decoder runs one /score request on a VAE may cost: images x k (x the "
        "classes, for a cvae scored without labels).",
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest request body."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token for /admin; unset = admin routes off."
    )
    api_keys: SecretStr | None = Field(
        default=None,
        description="Bearer keys for the public API, as name:key pairs separated by commas "
        "(e.g. app1:<key>,app2:<key>); unset (and no SERVICE_API_KEYS_FILE) = open to all.",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="A file of name:key lines (blank lines and # comments skipped), e.g. a "
        "mounted Kubernetes Secret; its keys join SERVICE_API_KEYS.",
    )
    metrics_need_key: bool = Field(
        default=False, description="With API keys on, /metrics needs a key too."
    )
    api_key_rate: NonNegativeFloat = Field(
        default=0.0,
        description="Requests per second each key may send (a token bucket per key, shared by "
        "the workers); 0 = no limit. Past it: 429 + Retry-After.",
    )
    api_key_burst: NonNegativeInt = Field(
        default=0,
        description="Requests a key may send at once before its rate applies; 0 = the rate, "
        "rounded up.",
    )
    watch_interval_s: NonNegativeFloat = Field(
        default=0.0, description="Poll the store for new versions every N s; 0 = off."
    )
    shutdown_grace_s: NonNegativeInt = Field(
        default=30, description="On SIGTERM, seconds requests in flight get to finish."
    )
    default_sample_model: str | None = None
    default_encode_model: str | None = None
    default_reconstruct_model: str | None = None
    default_interpolate_model: str | None = None
    default_score_model: str | None = None
    default_complete_model: str | None = None
    default_traverse_model: str | None = None

    @field_validator("model_store")
    @classmethod
    def _store_is_a_folder(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"model store {str(value)!r} is not a folder")
        return value.resolve()

    @field_validator("http_server")
    @classmethod
    def _server_is_installed(cls, value: HTTPServer) -> HTTPServer:
        if value == "granian" and importlib.util.find_spec("granian") is None:
            raise ValueError("granian is not installed (pip install 'genserve[granian]')")
        return value

    @field_validator("admin_token")
    @classmethod
    def _token_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():  # SERVICE_ADMIN_TOKEN= means off
            return None
        if len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters")
        return value

    @model_validator(mode="after")
    def _api_keys_are_well_formed(self) -> Settings:
        self.api_key_table()  # raises, naming the problem, before the service starts
        self.key_classes()
        return self

    @model_validator(mode="after")
    def _chunk_fits_a_batch(self) -> Settings:
        if self.bulk_chunk_images > self.batch_max_size:
            raise ValueError(
                f"bulk_chunk_images ({self.bulk_chunk_images}) must be at most batch_max_size "
                f"({self.batch_max_size}): a piece of bulk work is one run"
            )
        return self

    def key_classes(self) -> dict[str, RequestClassName]:
        """Each API key's default request class, by the key's name (SERVICE_API_KEY_CLASSES)."""
        classes: dict[str, RequestClassName] = {}
        names = self.api_key_table().keys()
        for pair in (p.strip() for p in (self.api_key_classes or "").split(",")):
            if not pair:
                continue
            name, _, klass = (part.strip() for part in pair.partition(":"))
            if name not in names:
                raise ValueError(f"api_key_classes: {name!r} is not the name of an API key")
            if klass not in ("interactive", "bulk"):
                raise ValueError(
                    f"api_key_classes: {name!r} has class {klass!r}; choose interactive or bulk"
                )
            classes[name] = "interactive" if klass == "interactive" else "bulk"
        return classes

    def api_key_table(self) -> dict[str, str]:
        """The API keys, by name: SERVICE_API_KEYS and the lines of SERVICE_API_KEYS_FILE."""
        pairs = self.api_keys.get_secret_value().split(",") if self.api_keys else []
        if self.api_keys_file is not None:
            try:
                lines = self.api_keys_file.read_text().splitlines()
            except OSError as exc:
                raise ValueError(f"api_keys_file: cannot read {self.api_keys_file}") from exc
            pairs += [line for line in lines if not line.lstrip().startswith("#")]
        keys: dict[str, str] = {}
        for pair in (p.strip() for p in pairs):
            if not pair:
                continue
            name, sep, key = (part.strip() for part in pair.partition(":"))
            if not sep or not KEY_NAME.fullmatch(name):
                raise ValueError("API keys: each is name:key, the name letters, digits, - and _")
            if len(key) < MIN_TOKEN_LENGTH:
                raise ValueError(f"API key {name!r}: at least {MIN_TOKEN_LENGTH} characters")
            if name in keys or key in keys.values():
                raise ValueError(f"API key {name!r}: names and keys must each be unique")
            keys[name] = key
        return keys

    def worker_count(self) -> int:
        """SERVICE_WORKERS, with 0 resolved to the cores this process may use."""
        return self.workers or usable_cores()

    def default_model(self, operation: str) -> str | None:
        value = getattr(self, f"default_{operation}_model", None)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ServiceConfig:
    """The settings turned, once, into what each layer is configured by. A setting that feeds
    two parts (the queue limit and time-out, for the batchers and the autoregressive slots) is
    read once, here."""

    settings: Settings
    limits: Limits
    batching: BatchPolicy
    sessions: SessionTuning
    """For the batched graphs: with SERVICE_INTRA_OP_THREADS=0, the cores shared among the
    batch instances."""
    autoregressive_sessions: SessionTuning
    """For the pixel-by-pixel families, which run one at a time on every core."""
    defaults: dict[str, str]
    """The default model of each operation that has one."""
    workers: int
    """Worker processes serving on the port (SERVICE_WORKERS, resolved)."""
    key_classes: dict[str, RequestClass]
    """Each API key's default request class, by the key's name."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceConfig:
        from service.generation.specs import Limits
        from service.registry.families import Operation
        from service.runtime.batching import BatchPolicy, RequestClass
        from service.runtime.sessions import SessionTuning

        queue_limit, queue_timeout = settings.batch_queue_limit, settings.queue_timeout_ms / 1000
        limits = Limits(
            max_n=settings.max_n,
            max_autoregressive_n=min(settings.max_autoregressive_n, settings.max_n),
            max_images=settings.max_images,
            queue_limit=queue_limit,
            queue_timeout=queue_timeout,
            max_iwae_k=settings.max_iwae_k,
            max_iwae_samples=settings.max_iwae_samples,
            interactive_n=settings.interactive_max_images,
        )
        batching = BatchPolicy(
            max_batch=settings.batch_max_size,
            max_delay=settings.batch_max_delay_us / 1e6,
            queue_limit=queue_limit,
            instances=settings.batch_instances,
            queue_timeout=queue_timeout,
            queue_policy=settings.queue_policy,
            interactive_rows=settings.interactive_max_images,
            chunk_rows=settings.bulk_chunk_images,
            interactive_window=settings.interactive_window_ms / 1000,
            bulk_share=settings.bulk_share,
            inline_rows=settings.inline_max_images,
        )
        workers = settings.worker_count()
        threads = settings.intra_op_threads
        if threads == 0 and batching.instances * workers > 1:  # the instances share the cores
            threads = max(1, usable_cores() // (batching.instances * workers))
        tuning = SessionTuning(
            settings.intra_op_threads, settings.ort_spinning, settings.ort_log_severity
        )
        defaults = {
            op.value: name for op in Operation if (name := settings.default_model(op.value))
        }
        return cls(
            settings=settings,
            limits=limits,
            batching=batching,
            sessions=replace(tuning, intra_op_threads=threads),
            autoregressive_sessions=tuning,
            defaults=defaults,
            workers=workers,
            key_classes={k: RequestClass(v) for k, v in settings.key_classes().items()},
        )

    def loader_options(
        self, providers: list[str], observers: Observers | None = None
    ) -> LoadOptions:
        """How models are loaded, once the providers are known (``choose_providers``)."""
        from service.generation.families import FAMILIES
        from service.registry.loader import LoadOptions
        from service.runtime.sessions import GraphOptions

        observers = observers or Observers()
        graphs = GraphOptions(
            tuple(providers), self.sessions, self.batching, observers.runs, observers.batches
        )
        autoregressive = replace(
            graphs,
            tuning=self.autoregressive_sessions,
            batching=replace(self.batching, instances=1),
        )
        return LoadOptions(
            self.settings.model_store, graphs, autoregressive, self.settings.warmup, FAMILIES
        )


def usable_cores() -> int:
    """The cores this process may use: its cgroup's CPU quota (cgroup v2 ``cpu.max``, in a
    container), rounded up, within its CPU affinity."""
    affinity = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return affinity
    if quota == "max":
        return affinity
    return max(1, min(affinity, math.ceil(int(quota) / int(period))))


@dataclass(frozen=True)
class Observers:
    """Who hears of each onnxruntime run and each batch (the metrics)."""

    runs: RunObserver | None = None
    batches: BatchObserver | None = None

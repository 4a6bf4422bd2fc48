"""Service settings: one pydantic-settings class, read once, environment prefix ``SERVICE_``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_STORE = Path(__file__).resolve().parent.parent / "model_store"

Device = Literal["auto", "cpu", "cuda"]
MIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVICE_", protected_namespaces=(), frozen=True)

    model_store: Path = Field(
        default=BUNDLED_STORE, description="A Triton model repository with genserve cards."
    )
    device: Device = Field(default="auto", description="auto prefers CUDA and falls back to CPU.")
    intra_op_threads: int = Field(
        default=0,
        ge=0,
        description="onnxruntime intra-op threads per session; 0 = cores / batch instances "
        "for batched graphs, onnxruntime's choice for PixelCNN.",
    )
    ort_log_severity: int = Field(
        default=3, ge=0, le=4, description="onnxruntime log level (3=error)."
    )
    ort_spinning: bool = Field(
        default=False, description="Let onnxruntime threads busy-wait between runs."
    )
    warmup: bool = Field(default=True, description="Run every graph once at start-up.")
    batch_max_size: int = Field(
        default=64, ge=1, le=4096, description="Most images in one batched onnxruntime run."
    )
    batch_max_delay_us: int = Field(
        default=0, ge=0, le=1_000_000, description="Microseconds a batch may wait to fill up."
    )
    batch_instances: int = Field(
        default=2, ge=1, le=64, description="Batches of one graph that may run at once."
    )
    batch_queue_limit: int = Field(
        default=256, ge=1, description="Requests queued per graph before 503 + Retry-After."
    )
    queue_timeout_ms: int = Field(
        default=10_000,
        ge=0,
        description="Most milliseconds a request waits for its run before 503 + Retry-After; "
        "0 = no limit.",
    )
    max_n: int = Field(default=64, ge=1, le=4096, description="Largest n for /sample.")
    max_autoregressive_n: int = Field(
        default=16, ge=1, le=4096, description="Largest n for PixelCNN (capped by max_n)."
    )
    max_concurrent_autoregressive: int = Field(
        default=1, ge=1, le=64, description="PixelCNN samplings that run at once; others queue."
    )
    max_images: int = Field(default=64, ge=1, le=4096, description="Most input images per request.")
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
    watch_interval_s: float = Field(
        default=0.0, ge=0, description="Poll the store for new versions every N s; 0 = off."
    )
    shutdown_grace_s: int = Field(
        default=30, ge=0, description="On SIGTERM, seconds requests in flight get to finish."
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

    @field_validator("admin_token")
    @classmethod
    def _token_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():  # SERVICE_ADMIN_TOKEN= means off
            return None
        if len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters")
        return value

    def default_model(self, operation: str) -> str | None:
        value = getattr(self, f"default_{operation}_model", None)
        return value if isinstance(value, str) else None

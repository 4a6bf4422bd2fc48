"""Service settings: one pydantic-settings class, read once, environment prefix ``SERVICE_``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_STORE = Path(__file__).resolve().parent.parent / "model_store"

Device = Literal["auto", "cpu", "cuda"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVICE_", protected_namespaces=(), frozen=True)

    model_store: Path = Field(
        default=BUNDLED_STORE, description="Folder holding <name>/<version>/."
    )
    device: Device = Field(default="auto", description="auto prefers CUDA and falls back to CPU.")
    intra_op_threads: int = Field(
        default=0, ge=0, description="onnxruntime intra-op threads; 0 = ORT."
    )
    ort_log_severity: int = Field(
        default=3, ge=0, le=4, description="onnxruntime log level (3=error)."
    )
    warmup: bool = Field(default=True, description="Run every graph once at start-up.")
    max_n: int = Field(default=64, ge=1, le=4096, description="Largest n for /sample.")
    max_autoregressive_n: int = Field(
        default=16, ge=1, le=4096, description="Largest n for PixelCNN (capped by max_n)."
    )
    max_concurrent_autoregressive: int = Field(
        default=1, ge=1, le=64, description="PixelCNN samplings that run at once; others queue."
    )
    max_images: int = Field(default=64, ge=1, le=4096, description="Most input images per request.")
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest request body."
    )
    default_sample_model: str | None = None
    default_encode_model: str | None = None
    default_reconstruct_model: str | None = None
    default_interpolate_model: str | None = None

    @field_validator("model_store")
    @classmethod
    def _store_is_a_folder(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"model store {str(value)!r} is not a folder")
        return value.resolve()

    def default_model(self, operation: str) -> str | None:
        value = getattr(self, f"default_{operation}_model", None)
        return value if isinstance(value, str) else None

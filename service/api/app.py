"""The application factory. Nothing is built at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from service.api.errors import install_error_handlers
from service.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from service.api.routes import api_router
from service.config import Settings
from service.metrics import Metrics
from service.registry import ModelState, Observers, Registry, load_registry

log = logging.getLogger(__name__)

DESCRIPTION = """Sample, encode, reconstruct and interpolate with the generative models of a
`model_store/`, on onnxruntime. Every error has the shape `{"error": ..., "code": ...}`."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    observers = Observers(runs=metrics.observe_run, batches=metrics)
    registry = await anyio.to_thread.run_sync(load_registry, settings, observers)
    app.state.registry = registry
    app.state.autoregressive_limiter = anyio.CapacityLimiter(settings.max_concurrent_autoregressive)
    for name, model in registry.models.items():
        if model.state is ModelState.UNSUPPORTED:  # not served, so neither ready nor failing
            continue
        ready = model.state is ModelState.READY
        metrics.model_ready.labels(name, str(model.version or "")).set(1.0 if ready else 0.0)
        for role, provider in model.providers.items():
            metrics.provider_info.labels(name, role, provider).set(1.0)
    providers = sorted({m.provider for m in registry.models.values() if m.provider})
    log.info(
        "%d of %d models ready (provider: %s)",
        sum(m.state is ModelState.READY for m in registry.models.values()),
        len(registry.models),
        ", ".join(providers) or "none",
    )
    yield
    await registry.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()
    app = FastAPI(
        title="genserve",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.registry = Registry({}, {})
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(api_router)
    return app

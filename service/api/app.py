"""The application factory. Nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from service.api.auth import ApiKeyMiddleware, ApiKeys, LocalBuckets, SharedBuckets, needs_key
from service.api.errors import install_error_handlers
from service.api.fastlane import FastLane
from service.api.middleware import MetricsMiddleware, RequestBodyMiddleware
from service.api.routes import ROUTERS
from service.config import Observers, ServiceConfig, Settings, usable_cores
from service.generation.operations import Operations
from service.metrics import Metrics, ModelSeries
from service.registry.control import ModelControl
from service.registry.fleet import Readiness, SharedFleet, SoloFleet
from service.registry.loader import ModelLoader, load_registry
from service.registry.registry import ModelState, Registry
from service.runtime.memory import limit_malloc_arenas
from service.runtime.rundir import RunDir, alive
from service.runtime.sessions import choose_providers
from service.runtime.slots import FileSlots, LocalSlots, Slots

log = logging.getLogger(__name__)

DESCRIPTION = """Sample, encode, reconstruct and interpolate with the generative models of a
`model_store/`, on onnxruntime. Every error has the shape `{"error": ..., "code": ...}`."""


def load_store(
    config: ServiceConfig, observers: Observers | None = None
) -> tuple[Registry, ModelLoader]:
    """Probe the providers, then load every model of the store (blocking): the registry, and
    the loader that loads them again (``ModelControl``)."""
    providers = choose_providers(config.settings.device, config.settings.ort_log_severity)
    loader = ModelLoader(config.loader_options(providers, observers))
    return load_registry(loader, config.defaults, threads=usable_cores()), loader


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    config: ServiceConfig = app.state.config
    metrics: Metrics = app.state.metrics
    observers = Observers(runs=metrics.observe_run, batches=metrics)
    registry, loader = await anyio.to_thread.run_sync(load_store, config, observers)
    app.state.registry = registry
    app.state.control = control = ModelControl(registry, loader)
    settings, run = config.settings, RunDir.from_environment()
    policy = Readiness(settings.readiness)
    fleet: SoloFleet | SharedFleet
    if run is None:
        slots: Slots = LocalSlots(settings.max_concurrent_autoregressive, settings.bulk_share)
        fleet = SoloFleet(registry, control, policy)
    else:
        slots = FileSlots(run.slots, settings.max_concurrent_autoregressive, settings.bulk_share)
        fleet = SharedFleet(run, config.workers, registry, control, policy)
        fleet.publish()
        metrics.forget_dead_workers(alive)
    for model in registry.models.values():
        if model.family is not None and model.state is ModelState.READY:
            operations = [operation.value for operation in model.operations]
            metrics.register_model(model.name, operations, model.family.autoregressive)
    app.state.operations = Operations(config.limits, slots)
    app.state.fleet = fleet
    metrics.model_states = partial(model_series, fleet)
    providers = sorted({m.provider for m in registry.models.values() if m.provider})
    log.info(
        "%d of %d models ready (provider: %s)",
        sum(m.state is ModelState.READY for m in registry.models.values()),
        len(registry.models),
        ", ".join(providers) or "none",
    )
    tasks = [asyncio.create_task(fleet.run(), name="fleet")]
    if settings.watch_interval_s > 0:
        watch = control.watch(settings.watch_interval_s)
        tasks.append(asyncio.create_task(watch, name="store-watch"))
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await registry.close()


def model_series(fleet: SoloFleet | SharedFleet) -> list[ModelSeries]:
    """The models' readiness and providers; a model not served (unsupported family, unloaded
    by an admin) has no series, so that it is neither ready nor failing."""
    return [
        ModelSeries(name, m.version, m.state is ModelState.READY, m.providers)
        for name, m in fleet.status().models.items()
        if m.state not in (ModelState.UNSUPPORTED, ModelState.UNLOADED)
    ]


def document_api_keys(app: FastAPI, metrics_need_key: bool, rate_limited: bool) -> None:
    """With API keys on, OpenAPI says which operations need one (a bearer token), and that they
    may answer 401 (and 429, with a per-key rate) in the route's own error shape."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["APIKey"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "One of SERVICE_API_KEYS: `Authorization: Bearer <key>`.",
            }
            for path, operations in schema["paths"].items():
                if needs_key(path, metrics_need_key):
                    shape = "ErrorObject" if path.startswith("/v2") else "ErrorResponse"
                    content = {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{shape}"}}
                    }
                    refusals = {"401": "No API key, or one the service does not know"}
                    if rate_limited:
                        refusals["429"] = "The key is past its rate (Retry-After says when)"
                    for operation in operations.values():
                        operation["security"] = [{"APIKey": []}]
                        for status, why in refusals.items():
                            operation["responses"][status] = {
                                "description": why,
                                "content": content,
                            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()
    config = ServiceConfig.from_settings(settings)
    app = FastAPI(
        title="genserve",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.config = config
    app.state.metrics = Metrics()  # registry, control, operations and fleet: the lifespan's
    if RunDir.from_environment() is not None:  # a worker of several: before any thread starts
        limit_malloc_arenas()
    install_error_handlers(app)
    app.add_middleware(FastLane, state=app.state)  # innermost: the routes' hot path
    app.add_middleware(RequestBodyMiddleware, max_bytes=settings.max_body_bytes)
    keys = settings.api_key_table()
    if keys:
        run = RunDir.from_environment()
        buckets = SharedBuckets(run.root / "buckets") if run else LocalBuckets()
        api_keys = ApiKeys(keys, settings.api_key_rate, settings.api_key_burst, buckets)
        app.add_middleware(
            ApiKeyMiddleware,
            keys=api_keys,
            metrics=app.state.metrics,
            metrics_need_key=settings.metrics_need_key,
        )
        document_api_keys(app, settings.metrics_need_key, settings.api_key_rate > 0)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    for router in ROUTERS:  # on the app itself: each nested router adds a matching layer
        app.include_router(router)
    return app

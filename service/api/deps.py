"""Dependencies, as ``Annotated`` aliases that tests can swap through dependency_overrides.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool,
a thread hop per dependency per request, which at full load cost a quarter of the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.families import Operation
from service.metrics import Metrics
from service.model_control import ModelControl
from service.operations import Limits
from service.registry import LoadedModel, Registry


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_control(request: Request) -> ModelControl:
    control: ModelControl = request.app.state.control
    return control


async def get_limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
LimitsDep = Annotated[Limits, Depends(get_limits)]
ControlDep = Annotated[ModelControl, Depends(get_control)]


def resolve_model(
    request: Request, registry: Registry, name: str | None, operation: Operation
) -> LoadedModel:
    """Pick the model and label the request's metrics with it."""
    model = registry.resolve(name, operation)
    request.state.model = model.name
    return model

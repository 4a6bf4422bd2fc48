"""Dependencies, as ``Annotated`` aliases that tests can swap through dependency_overrides.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool,
a thread hop per dependency per request, which at full load cost a quarter of the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.generation.operations import Operations
from service.metrics import Metrics
from service.registry.control import ModelControl
from service.registry.registry import Registry


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


async def get_operations(request: Request) -> Operations:
    operations: Operations = request.app.state.operations
    return operations


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ControlDep = Annotated[ModelControl, Depends(get_control)]
OperationsDep = Annotated[Operations, Depends(get_operations)]

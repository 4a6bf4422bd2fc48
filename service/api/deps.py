"""Dependencies, as ``Annotated`` aliases that tests can swap through dependency_overrides.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool,
a thread hop per dependency per request, which at full load cost a quarter of the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from service.config import Settings
from service.metrics import Metrics
from service.registry.fleet import Fleet
from service.registry.registry import Registry


def _state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency that gives ``app.state.<name>``."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = f"get_{name}"
    return get


get_settings, get_registry, get_metrics, get_fleet = (
    _state(name) for name in ("settings", "registry", "metrics", "fleet")
)

SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
FleetDep = Annotated[Fleet, Depends(get_fleet)]

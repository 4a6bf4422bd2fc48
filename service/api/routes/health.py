from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import RegistryDep
from service.api.schemas import LiveResponse, ModelHealth, ReadyResponse
from service.registry.registry import ModelState, Registry

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    """The process is up and answering."""
    return LiveResponse()


@router.get(
    "/ready",
    response_model=ReadyResponse,
    response_model_exclude_none=True,
    responses={503: {"model": ReadyResponse, "description": "Not ready; same body, with why."}},
)
async def ready(registry: RegistryDep) -> Any:
    """200 only when the models are loaded, at least one serves and none failed; 503 otherwise,
    with the same body saying why. Families the service does not serve (e.g. a classifier) are
    listed as unsupported and do not block readiness."""
    body = ReadyResponse(
        ready=registry.ready,
        models={
            name: ModelHealth(
                state=m.state.value, version=m.version, provider=m.provider, reason=m.reason
            )
            for name, m in registry.models.items()
        },
    )
    if registry.ready:
        return body
    body.error, body.code = _why_not_ready(registry), "not_ready"
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503)


def _why_not_ready(registry: Registry) -> str:
    if not registry.loaded:
        return "models are still loading"
    failed = [
        f"{name} ({m.reason})"
        for name, m in registry.models.items()
        if m.state is ModelState.FAILED
    ]
    if failed:
        return "not ready: " + "; ".join(failed)
    unloaded = [name for name, m in registry.models.items() if m.state is ModelState.UNLOADED]
    if unloaded:
        return "no model serves: unloaded by an admin: " + ", ".join(unloaded)
    return "the model store holds no model this service can serve"

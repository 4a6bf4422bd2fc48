from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import FleetDep
from service.api.schemas import LiveResponse, ModelHealth, ReadyResponse

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
async def ready(fleet: FleetDep) -> Any:
    """200 when the service is ready under SERVICE_READINESS: with `any` (the default) once the
    models are loaded and one at least serves, with `strict` only when none failed either; 503
    otherwise, with the same body saying why. With several workers, every worker must be, and
    each model shows its state in the least ready of them. Families the service does not serve
    (e.g. a classifier) are listed as unsupported and never block readiness. For one model,
    probe `/v2/models/{model}/ready`."""
    status = fleet.status()
    body = ReadyResponse(
        ready=status.ready,
        models={
            name: ModelHealth(
                state=m.state.value, version=m.version, provider=m.provider, reason=m.reason
            )
            for name, m in status.models.items()
        },
    )
    if status.ready:
        return body
    body.error, body.code = status.why_not, "not_ready"
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503)

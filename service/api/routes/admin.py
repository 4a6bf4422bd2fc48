"""Model control for operators: load, unload and reload a model while the service runs.

Off unless SERVICE_ADMIN_TOKEN is set; then every call needs ``Authorization: Bearer <token>``,
compared in constant time.
"""

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from modelstore.layout import MODEL_NAME
from service.api.deps import FleetDep, SettingsDep
from service.api.schemas import ModelChangeResponse, error_responses
from service.errors import AdminDisabled, Unauthorized
from service.registry.control import Action, ModelChange

_bearer = HTTPBearer(auto_error=False, description="The value of SERVICE_ADMIN_TOKEN.")


async def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if settings.admin_token is None:
        raise AdminDisabled("admin endpoints are off: set SERVICE_ADMIN_TOKEN to turn them on")
    given = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(given, settings.admin_token.get_secret_value().encode()):
        raise Unauthorized("admin endpoints need 'Authorization: Bearer <SERVICE_ADMIN_TOKEN>'")


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

ModelNameParam = Annotated[
    str,
    Path(
        pattern=f"^{MODEL_NAME.pattern}$",
        max_length=200,
        description="A model of the store, as /models lists it.",
    ),
]
_ERRORS = error_responses(401, 404, 422, 503)


@router.post(
    "/models/{name}/load",
    response_model=ModelChangeResponse,
    responses={**_ERRORS, **error_responses(409)},
)
async def load(name: ModelNameParam, fleet: FleetDep) -> ModelChangeResponse:
    """Serve the store's newest version of `name`: a model added to the store since start-up,
    one unloaded before, or a newer version. Nothing to do (`changed: false`) when that version
    already serves. The new version loads and warms up before it replaces the old one; a
    version that fails to load is a 409, and the old one keeps serving. Every worker makes the
    change before the answer comes."""
    return _response(await fleet.change(name, Action.LOAD))


@router.post(
    "/models/{name}/reload",
    response_model=ModelChangeResponse,
    responses={**_ERRORS, **error_responses(409)},
)
async def reload(name: ModelNameParam, fleet: FleetDep) -> ModelChangeResponse:
    """Load the store's newest version of `name` again, even if it is the one serving, and swap
    it in once warm. Requests in flight finish on the old version; none fails."""
    return _response(await fleet.change(name, Action.RELOAD))


@router.post("/models/{name}/unload", response_model=ModelChangeResponse, responses=_ERRORS)
async def unload(name: ModelNameParam, fleet: FleetDep) -> ModelChangeResponse:
    """Stop serving `name` (its requests get 503 `model_not_ready` until it is loaded again);
    requests in flight finish. An unloaded model does not block readiness."""
    return _response(await fleet.change(name, Action.UNLOAD))


def _response(change: ModelChange) -> ModelChangeResponse:
    return ModelChangeResponse(
        model=change.name,
        action=change.action.value,
        changed=change.changed,
        state=change.current.state.value,
        version=change.current.version,
        previous_version=change.previous.version if change.previous else None,
        seconds=round(change.seconds, 3),
    )

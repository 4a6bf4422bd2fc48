"""The Open Inference Protocol (KServe v2) REST endpoints, beside the service's own API. The
protocol lives in ``service.inference_protocol``; errors become ``{"error": ...}`` in
``service.api.errors``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from service.api.answers import infer_answer
from service.api.deps import FleetDep, RegistryDep
from service.api.running import CLASS_PARAMETER, Call
from service.errors import ModelNotReady
from service.inference_protocol import models
from service.inference_protocol.schema import (
    ErrorObject,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
)

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])

EXTENSIONS = ["binary_tensor_data"]
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorObject} for status in (400, 404, 413, 503)
}
_VERSION: dict[str, Any] = {
    "in": "path",
    "name": "model_version",
    "required": True,
    "schema": {"title": "Model Version", "type": "string"},
}
"""The versioned path's parameter: one handler serves both paths and reads it from the path, so
OpenAPI is told of it here."""
_INFER_BODY = {
    "description": "JSON, or with `Inference-Header-Content-Length`: that many bytes of JSON, "
    "then the binary outputs in order (the binary tensor data extension).",
    "content": {"application/octet-stream": {}},
}


@router.get("", response_model=ServerMetadata)
async def server_metadata(request: Request) -> ServerMetadata:
    return ServerMetadata(name="genserve", version=request.app.version, extensions=EXTENSIONS)


@router.get("/health/live", response_model=ServerLive)
async def server_live() -> ServerLive:
    return ServerLive(live=True)


@router.get("/health/ready", response_model=ServerReady, responses=_ERRORS)
async def server_ready(fleet: FleetDep) -> ServerReady:
    """200 when the service is ready, as ``GET /health/ready`` (SERVICE_READINESS)."""
    if not fleet.status().ready:
        raise ModelNotReady("not ready: see GET /health/ready for each model's state")
    return ServerReady(ready=True)


def _version(request: Request) -> str | None:
    version: str | None = request.path_params.get("model_version")
    return version


def _with_versions(
    method: str, tail: str, versioned_name: str, headers: tuple[Any, ...] = (), **route: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One handler for ``/models/{model_name}<tail>`` and its versioned twin
    ``/models/{model_name}/versions/{model_version}<tail>`` (which ``_version`` reads);
    ``headers``: the OpenAPI parameters of headers the handler reads from the request."""

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        add = getattr(router, method)
        plain = {"openapi_extra": {"parameters": list(headers)}} if headers else {}
        add(f"/models/{{model_name}}{tail}", **plain, **route)(handler)
        versioned = f"/models/{{model_name}}/versions/{{model_version}}{tail}"
        extra = {"parameters": [_VERSION, *headers]}
        add(versioned, name=versioned_name, openapi_extra=extra, **route)(handler)
        return handler

    return register


@_with_versions(
    "get", "", "model_version_metadata", response_model=ModelMetadata, responses=_ERRORS
)
async def model_metadata(model_name: str, request: Request, registry: RegistryDep) -> ModelMetadata:
    return models.find(registry, model_name, _version(request)).metadata()


@_with_versions(
    "get", "/ready", "model_version_ready", response_model=ModelReady, responses=_ERRORS
)
async def model_ready(model_name: str, request: Request, registry: RegistryDep) -> ModelReady:
    return ModelReady(name=models.find(registry, model_name, _version(request)).name, ready=True)


@_with_versions(
    "post",
    "/infer",
    "infer_version",
    headers=(CLASS_PARAMETER,),
    response_model=InferenceResponse,
    responses={200: _INFER_BODY, **_ERRORS},
)
async def infer(model_name: str, request: Request) -> Response:
    """Run one v2 model. The body is an inference request as JSON; with the binary tensor data
    extension, the inputs' bytes follow it."""
    return (
        await infer_answer(Call.of(request), model_name, _version(request), await request.body())
    ).response()

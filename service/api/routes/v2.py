"""The Open Inference Protocol (KServe v2) REST endpoints, beside the service's own API. The
protocol lives in ``service.inference_protocol``; errors become ``{"error": ...}`` in
``service.api.errors``."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from service.api.content import header
from service.api.deps import FleetDep, RegistryDep
from service.api.running import Answer, Call, stopped_when
from service.errors import InvalidInput, ModelNotReady, PayloadTooLarge
from service.generation.autoregressive import RowWatch
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
from service.inference_protocol.tensors import (
    HEADER_LENGTH,
    decode_request,
    encode_response,
    requested_outputs,
)

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])

EXTENSIONS = ["binary_tensor_data"]
INLINE_BYTES = 64 * 1024
T = TypeVar("T")
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorObject} for status in (400, 404, 413, 503)
}
_VERSION: dict[str, Any] = {
    "parameters": [
        {
            "in": "path",
            "name": "model_version",
            "required": True,
            "schema": {"title": "Model Version", "type": "string"},
        }
    ]
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
    method: str, tail: str, versioned_name: str, **route: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One handler for ``/models/{model_name}<tail>`` and its versioned twin
    ``/models/{model_name}/versions/{model_version}<tail>`` (which ``_version`` reads)."""

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        add = getattr(router, method)
        add(f"/models/{{model_name}}{tail}", **route)(handler)
        versioned = f"/models/{{model_name}}/versions/{{model_version}}{tail}"
        add(versioned, name=versioned_name, openapi_extra=_VERSION, **route)(handler)
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
    response_model=InferenceResponse,
    responses={200: _INFER_BODY, **_ERRORS},
)
async def infer(model_name: str, request: Request) -> Response:
    """Run one v2 model. The body is an inference request as JSON; with the binary tensor data
    extension, the inputs' bytes follow it."""
    return (
        await answer_infer(Call.of(request), model_name, _version(request), await request.body())
    ).response()


async def answer_infer(call: Call, name: str, version: str | None, body: bytes) -> Answer:
    """The route's answer, which the fast lane sends too."""
    app = call.app
    v2 = models.find(app.registry, name, version)
    call.scope.setdefault("state", {})["model"] = v2.model.name
    encoding = header(call.scope, b"content-encoding").decode("latin-1") or None
    body = _decoded(body, encoding, app.settings.max_body_bytes)
    length = header(call.scope, HEADER_LENGTH.lower().encode()).decode("latin-1") or None
    decoded = await _off_loop_if_large(len(body), decode_request, body, length)
    outputs = requested_outputs(decoded.request, [t.name for t in v2.outputs])
    timeout_us = decoded.request.parameters.get("timeout")  # Triton's: microseconds
    if timeout_us is not None and (not isinstance(timeout_us, int) or timeout_us < 1):
        raise InvalidInput(f"parameters.timeout: microseconds, at least 1, got {timeout_us!r}")
    timeout_ms = timeout_us / 1000 if timeout_us else None
    async with stopped_when(app.metrics, v2.model.name, v2.kind.value, timeout_ms, RowWatch()):
        result = await models.infer(v2, decoded.tensors, app.operations)
    if v2.kind is not models.Kind.GRAPH:
        app.metrics.images.labels(v2.model.name, v2.kind.value).inc(len(result.outputs["images"]))
    head: dict[str, Any] = {"model_name": v2.name, "model_version": v2.version}
    if decoded.request.id is not None:
        head["id"] = decoded.request.id
    if result.parameters:
        head["parameters"] = result.parameters
    chosen = [(name, result.outputs[name], binary) for name, binary in outputs]
    size = sum(array.nbytes for _, array, _ in chosen)
    payload, json_length = await _off_loop_if_large(size, encode_response, head, chosen)
    if json_length is None:
        return Answer(payload, "application/json")
    return Answer(payload, "application/octet-stream", {HEADER_LENGTH: str(json_length)})


async def _off_loop_if_large(size: int, work: Callable[..., T], *args: Any) -> T:
    """Parsing or writing a large tensor would hold up the event loop; a small one costs less
    than the hop to a worker thread."""
    if size <= INLINE_BYTES:
        return work(*args)
    return await anyio.to_thread.run_sync(work, *args)


def _decoded(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before ``Content-Encoding`` (gzip or deflate, as tritonclient can send
    it), inflated to at most the body limit."""
    if encoding in (None, "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInput(f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")
    inflate = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
    try:
        data = inflate.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"body: not valid {encoding} data") from exc
    if len(data) > limit or inflate.unconsumed_tail:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    return data

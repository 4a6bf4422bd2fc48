"""The one place where errors become HTTP responses: in the ErrorResponse shape, and under
``/v2`` in the Open Inference Protocol's ``{"error": ...}``, with 400 for a bad request."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import (
    AdminDisabled,
    DeadlineExceeded,
    InvalidInput,
    LimitExceeded,
    ModelLoadFailed,
    ModelNotFound,
    ModelNotReady,
    ModelRunFailed,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    RetryLater,
    ServiceError,
    Unauthorized,
    UnsupportedOperation,
)

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[ServiceError], int] = {
    ModelNotFound: 404,
    InvalidInput: 422,
    UnsupportedOperation: 422,
    LimitExceeded: 422,
    PayloadTooLarge: 413,
    ModelNotReady: 503,
    DeadlineExceeded: 504,
    ModelRunFailed: 503,
    Overloaded: 503,
    ModelLoadFailed: 409,
    Unauthorized: 401,
    RateLimited: 429,
    AdminDisabled: 404,
}
_MAX_LISTED = 5
V2_PREFIX = "/v2"


def status_for(exc: ServiceError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_content(
    message: str, code: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "code": code}
    if details is not None:
        body["details"] = details
    return body


def is_v2(path: str) -> bool:
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def error_content_for(path: str, message: str, code: str) -> dict[str, Any]:
    return {"error": message} if is_v2(path) else error_content(message, code)


def _reply(
    request: Request | str,
    status: int,
    message: str,
    code: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The error in the shape of the path's API; ``request`` may be the path itself."""
    if is_v2(request if isinstance(request, str) else request.url.path):
        status = 400 if status == 422 else status
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    return JSONResponse(error_content(message, code, details), status_code=status, headers=headers)


def response_for(method: str, path: str, exc: ServiceError) -> JSONResponse:
    """The response to a domain error, wherever it is raised: in a route, or in a middleware
    before any route runs."""
    status = status_for(exc)
    if status == 500:
        log.error("%s %s: %s", method, path, exc.message)
        return _reply(path, 500, "internal error", "internal_error")
    headers = None
    if isinstance(exc, RetryLater):
        headers = {"Retry-After": str(math.ceil(exc.retry_after))}
    elif isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return _reply(path, status, exc.message, exc.code, headers=headers)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return response_for(request.method, request.url.path, exc)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        reason = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {})
        return _reply(
            request,
            422,
            f"body: invalid JSON ({reason.get('error', 'cannot parse')})",
            "invalid_json",
        )
    details = [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in e["loc"]],
            "msg": str(e["msg"]),
            "type": str(e["type"]),
        }
        for e in errors
    ]
    parts = [f"{_loc(e['loc'])}: {_clean(str(e['msg']))}" for e in errors[:_MAX_LISTED]]
    if len(errors) > _MAX_LISTED:
        parts.append(f"and {len(errors) - _MAX_LISTED} more")
    return _reply(request, 422, "; ".join(parts), "validation_error", details=details)


def _clean(msg: str) -> str:
    return msg.removeprefix("Value error, ")


_UNPARSABLE_BODY = "There was an error parsing the body"
"""FastAPI's 400 for a body it cannot even decode; the same mistake as invalid JSON, so 422."""


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status, path = exc.status_code, request.url.path
    if status == 404 and exc.detail == "Not Found":
        message, code = f"no route {request.method} {path}", "not_found"
    elif status == 405:
        message, code = f"method {request.method} not allowed on {path}", "method_not_allowed"
    elif status == 400 and exc.detail == _UNPARSABLE_BODY:  # e.g. bytes that are not UTF-8
        status, message, code = 422, "body: invalid JSON (cannot decode it)", "invalid_json"
    else:
        message, code = str(exc.detail), _snake(status)
    if status >= 500:
        log.error("%s %s: HTTP %s %s", request.method, path, status, exc.detail)
        message = "internal error"
    return _reply(request, status, message, code, headers=exc.headers)


def _snake(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "http_error"
    return phrase.lower().replace(" ", "_").replace("-", "_").replace("'", "")


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _reply(request, 500, "internal error", "internal_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)

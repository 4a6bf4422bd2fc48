"""The service's errors as exceptions: one class per API error ``code``, all GenserveError,
made from an error answer (``error_from_response``: ``{"error", "code", "details"}`` and
``Retry-After``) or a stream's ``error`` event (``error_from_event``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
_BY_CODE: dict[str, type[GenserveError]] = {}
"""The class of each API error code: every class that has a status, and two more codes."""


class GenserveError(Exception):
    """An API error (``status``: its HTTP status) or a transport failure (``status`` None), with
    the service's ``code``, its ``message``, the seconds of a ``Retry-After`` (``retry_after``)
    and the per-field problems of a request that did not validate (``details``)."""

    default_code = "error"
    default_status: int | None = None
    """The status the service answers this error with: an ``error`` event's, which has none."""

    def __init_subclass__(
        cls, code: str | None = None, status: int | None = None, **kwargs: Any
    ) -> None:
        """``class X(GenserveError, code=..., status=...)``: X's code and status (default: its
        base's); an API error (one with a status) is found by its code."""
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.default_code = code
        if status is not None:
            cls.default_status = status
        if code is not None and cls.default_status is not None:
            _BY_CODE[code] = cls

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or self.default_code
        self.retry_after = retry_after
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConnectionFailed(GenserveError, code="connection_failed"):
    """No HTTP answer: the service could not be reached or the connection broke."""


class TimedOut(ConnectionFailed, code="timeout"):
    """No answer within the call's time-out."""


class Unauthorized(GenserveError, code="unauthorized", status=401):
    """401: no API key, or one the service does not know."""


class NotFound(GenserveError, code="not_found", status=404):
    """404: no such route (a wrong URL or path prefix)."""


class ModelNotFound(NotFound, code="model_not_found"):
    """404: no model of that name in the store."""


class MethodNotAllowed(GenserveError, code="method_not_allowed", status=405):
    """405: the route does not take that method."""


class ValidationError(GenserveError, code="validation_error", status=422):
    """422: the request does not validate (``validation_error``, with ``details``), is not
    JSON (``invalid_json``), or holds an input the model cannot take (``invalid_input``)."""


class UnsupportedOperation(GenserveError, code="unsupported_operation", status=422):
    """422: the model's family cannot do that; the message names models that can."""


class LimitExceeded(GenserveError, code="limit_exceeded", status=422):
    """422: n, the number of images, k or images x samples over the service's limit."""


class PayloadTooLarge(LimitExceeded, code="payload_too_large", status=413):
    """413: the request body is over SERVICE_MAX_BODY_BYTES."""


class RateLimited(GenserveError, code="rate_limited", status=429):
    """429: the API key sent more than its rate; ``retry_after`` says when it may again."""


class ModelNotReady(GenserveError, code="model_not_ready", status=503):
    """503: the model failed to load or is unloaded."""


class Overloaded(GenserveError, code="overloaded", status=503):
    """503: the model's queue is full or the request waited too long; see ``retry_after``."""


class DeadlineExceeded(GenserveError, code="deadline_exceeded", status=504):
    """504: the request's ``timeout_ms`` passed; the service stopped its work."""


class ServerError(GenserveError, code="internal_error", status=500):
    """500 (a bug on the server), or another 5xx the API does not name."""


class ModelRunFailed(ServerError, code="model_run_failed", status=503):
    """503: onnxruntime failed while running the model's graph."""


_BY_CODE |= {"invalid_json": ValidationError, "invalid_input": ValidationError}
_BY_STATUS: dict[int, type[GenserveError]] = {
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    422: ValidationError,
    429: RateLimited,
}
"""For an answer without a code this client knows (a proxy's, say)."""


def error_from_response(response: httpx.Response) -> GenserveError:
    """The exception for an error answer of the service's API."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    text = response.text.strip()[:200] or response.reason_phrase or "no message"
    return _error(body, text, response.status_code, retry_after_seconds(response.headers))


def error_from_event(body: Any) -> GenserveError:
    """The exception for an ``error`` event: the class of its code (ServerError for a code this
    client does not know), with the status the plain call would have answered."""
    return _error(body, "no message", None, None)


def _error(body: Any, text: str, status: int | None, retry_after: float | None) -> GenserveError:
    """The class of the body's ``code``, else of ``status``; the body's ``error``, else ``text``."""
    body = body if isinstance(body, dict) else {}
    message = body["error"] if isinstance(body.get("error"), str) else text
    code = body.get("code") if isinstance(body.get("code"), str) else None
    cls = _BY_CODE.get(code or "") or (_BY_STATUS.get(status) if status is not None else None)
    if cls is None:
        cls = ServerError if status is None or status >= 500 else GenserveError
    if status is None:
        status = cls.default_status
    details = body.get("details")
    return cls(
        message,
        status=status,
        code=code or (cls.default_code if cls is not GenserveError else f"http_{status}"),
        retry_after=retry_after,
        details=details if isinstance(details, list) else None,
    )


def parse_answer(response: httpx.Response, parse: Callable[[Any], T]) -> T:
    """``parse`` of an answer's JSON; ServerError for an answer that is not the API's (a
    proxy's page, say)."""
    try:
        return parse(response.json())
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerError(
            f"{response.request.method} {response.request.url}: the answer is not the API's "
            f"({type(exc).__name__}: {exc})",
            status=response.status_code,
            code="unexpected_answer",
        ) from exc


def transport_failure(
    exc: httpx.TransportError, where: str, timeout: float | None
) -> ConnectionFailed:
    """TimedOut for a time-out of httpx, else ConnectionFailed; ``where``: ``METHOD url``."""
    if isinstance(exc, httpx.TimeoutException):
        return TimedOut(f"{where}: no answer within {timeout} s")
    return ConnectionFailed(f"{where}: {str(exc) or type(exc).__name__}")


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds; None when absent or not a number of seconds (the service
    only sends seconds, so an HTTP date from elsewhere is ignored rather than parsed)."""
    try:
        seconds = float(headers.get("retry-after", "nan"))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None

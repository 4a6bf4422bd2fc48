"""Domain errors. They know nothing about HTTP; ``service.api.errors`` maps them to responses."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class; ``code`` is the snake_case code a client sees."""

    code = "service_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelNotFound(ServiceError):
    code = "model_not_found"


class ModelNotReady(ServiceError):
    code = "model_not_ready"


class InvalidInput(ServiceError):
    code = "invalid_input"


class UnsupportedOperation(ServiceError):
    code = "unsupported_operation"


class LimitExceeded(ServiceError):
    code = "limit_exceeded"


class PayloadTooLarge(LimitExceeded):
    code = "payload_too_large"


class DeviceUnavailable(ServiceError):
    code = "device_unavailable"


class RetryLater(ServiceError):
    """A refusal for now: the client may send again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Overloaded(RetryLater):
    """Too much work queued; the client should retry after ``retry_after`` seconds."""

    code = "overloaded"


class DeadlineExceeded(ServiceError):
    """The request's deadline (its ``timeout_ms``) passed before its answer was ready; its
    work was stopped."""

    code = "deadline_exceeded"


class ModelRunFailed(ServiceError):
    """onnxruntime failed while running a graph; the details are in the server log."""

    code = "model_run_failed"


class ModelLoadFailed(ServiceError):
    """An admin load or reload whose new version did not load; what served before still does."""

    code = "model_load_failed"


class AdminDisabled(ServiceError):
    code = "admin_disabled"


class Unauthorized(ServiceError):
    code = "unauthorized"


class RateLimited(RetryLater):
    """A client's API key sent more than its rate; it may send again after ``retry_after`` s."""

    code = "rate_limited"

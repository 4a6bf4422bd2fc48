"""A client for genserve: ``Client`` (and ``AsyncClient``) for Python, ``genserve`` on the
command line. It needs httpx, numpy and Pillow only.

    from genserve import Client
    Client().sample("dcgan-fashion", n=16, seed=42).save_grid("grid.png")
"""

from genserve.client import DEFAULT_TIMEOUT, DEFAULT_URL, AsyncClient, Client, Retries
from genserve.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    GenserveError,
    LimitExceeded,
    MethodNotAllowed,
    ModelNotFound,
    ModelNotReady,
    ModelRunFailed,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    TimedOut,
    Unauthorized,
    UnsupportedOperation,
    ValidationError,
)
from genserve.results import (
    CompleteResult,
    EncodeResult,
    Health,
    ImageResult,
    InterpolateResult,
    ModelHealth,
    ModelInfo,
    ReconstructResult,
    SampleResult,
    SamplingInfo,
    ScoreResult,
    TraverseResult,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "AsyncClient",
    "Client",
    "CompleteResult",
    "ConnectionFailed",
    "DeadlineExceeded",
    "EncodeResult",
    "GenserveError",
    "Health",
    "ImageResult",
    "InterpolateResult",
    "LimitExceeded",
    "MethodNotAllowed",
    "ModelHealth",
    "ModelInfo",
    "ModelNotFound",
    "ModelNotReady",
    "ModelRunFailed",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "RateLimited",
    "ReconstructResult",
    "Retries",
    "SampleResult",
    "SamplingInfo",
    "ScoreResult",
    "ServerError",
    "TimedOut",
    "TraverseResult",
    "Unauthorized",
    "UnsupportedOperation",
    "ValidationError",
]

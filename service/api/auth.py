"""API keys for the public API: ``Authorization: Bearer <key>`` on every operation when
SERVICE_API_KEYS (or SERVICE_API_KEYS_FILE) names any. The health routes, the web page and the
API documentation stay open, and /metrics too unless SERVICE_METRICS_NEED_KEY; /admin has its
own token. Keys are compared in constant time, and only their names reach metrics and logs.
An optional rate per key answers 429 with Retry-After past it."""

from __future__ import annotations

import fcntl
import hmac
import math
import time
from collections.abc import Mapping
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import response_for
from service.errors import RateLimited, ServiceError, Unauthorized
from service.metrics import Metrics

OPEN_PREFIXES = ("/health/", "/v2/health/", "/ui/", "/admin/")
OPEN_PATHS = frozenset(
    {"/", "/ui", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/v2"}
)


def take(
    tokens: float, updated: float, now: float, rate: float, burst: float
) -> tuple[float, float]:
    """A token bucket of ``rate`` tokens a second, up to ``burst``, after a request asks for one
    at ``now``: (tokens left, 0) if it may go, else (tokens, the seconds until it may)."""
    tokens = min(burst, tokens + (now - updated) * rate)
    if tokens >= 1:
        return tokens - 1, 0.0
    return tokens, (1 - tokens) / rate


class LocalBuckets:
    """The keys' buckets in this process."""

    def __init__(self) -> None:
        self.state: dict[str, tuple[float, float]] = {}

    def take(self, name: str, rate: float, burst: float) -> float:
        now = time.monotonic()
        tokens, updated = self.state.get(name, (burst, now))
        tokens, wait = take(tokens, updated, now, rate, burst)
        self.state[name] = (tokens, now)
        return wait


class SharedBuckets:
    """The keys' buckets of every worker: one file per key in ``folder``, read and written under
    an exclusive lock, so that a key's rate is the service's, however requests spread."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(exist_ok=True)

    def take(self, name: str, rate: float, burst: float) -> float:
        with (self.folder / name).open("a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            now = time.time()
            try:
                tokens, updated = (float(v) for v in f.read().split())
            except ValueError:  # a new key
                tokens, updated = burst, now
            tokens, wait = take(tokens, updated, now, rate, burst)
            f.seek(0)
            f.truncate()
            f.write(f"{tokens!r} {now!r}")
        return wait


class ApiKeys:
    """The keys by name, and each key's rate (its buckets in ``buckets``)."""

    def __init__(
        self,
        keys: Mapping[str, str],
        rate: float = 0.0,
        burst: int = 0,
        buckets: LocalBuckets | SharedBuckets | None = None,
    ) -> None:
        self.keys = [(name, key.encode()) for name, key in keys.items()]
        self.rate, self.burst = rate, burst or math.ceil(rate)
        self.buckets = buckets or LocalBuckets()

    def name_of(self, authorization: bytes | None) -> str:
        """The name of the key a request's ``Authorization`` header carries; Unauthorized if it
        carries none or one that is not a key. Every key is compared, in constant time."""
        scheme, _, given = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not given.strip():
            raise Unauthorized("this API needs a key: send 'Authorization: Bearer <key>'")
        found = None
        for name, key in self.keys:
            if hmac.compare_digest(given.strip(), key):
                found = name
        if found is None:
            raise Unauthorized("the API key is not one of this service's keys")
        return found

    def admit(self, name: str) -> None:
        """RateLimited if the key has sent more than its rate."""
        if self.rate <= 0:
            return
        wait = self.buckets.take(name, self.rate, self.burst)
        if wait > 0:
            raise RateLimited(f"API key {name!r} sends more than {self.rate:g} requests/s", wait)


def needs_key(path: str, metrics_need_key: bool) -> bool:
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return False
    return metrics_need_key or path != "/metrics"


class ApiKeyMiddleware:
    """Refuses a request to a closed path without a valid key (401) or past its key's rate
    (429), before it reaches a route; counts the requests of every key by its name."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, metrics: Metrics, metrics_need_key: bool):
        self.app, self.keys, self.metrics = app, keys, metrics
        self.metrics_need_key = metrics_need_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not needs_key(scope["path"], self.metrics_need_key):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        try:
            name = self.keys.name_of(header)
            self.keys.admit(name)
        except ServiceError as exc:
            reason = "rate_limited" if isinstance(exc, RateLimited) else "unauthorized"
            self.metrics.auth_refusals.labels(reason).inc()
            await response_for(scope["method"], scope["path"], exc)(scope, receive, send)
            return
        self.metrics.key_requests.labels(name).inc()
        scope.setdefault("state", {})["api_key"] = name
        await self.app(scope, receive, send)

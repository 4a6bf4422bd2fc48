"""Content negotiation for the routes that can answer with a PNG instead of JSON."""

from __future__ import annotations

from starlette.types import Scope

from service.errors import InvalidInput

_JSON_RANGES = ("application/json", "application/*", "*/*")


def header(scope: Scope, name: bytes) -> bytes:
    """A request header's value (the first, if repeated), or b"" if it has none."""
    return next((v for k, v in scope["headers"] if k == name), b"")


def wants_png(scope: Scope) -> bool:
    """True if the Accept header prefers image/png to JSON (RFC 9110 quality values).

    ``image/png`` must be named: a bare ``*/*`` keeps the JSON default. On a tie the named
    image/png wins, since a client only names it on purpose.
    """
    accept = header(scope, b"accept")
    if b"image/png" not in accept:  # the common case, decided without parsing
        return False
    png_q, json_q = 0.0, 0.0
    for item in accept.decode("latin-1").split(","):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        q = _quality(params)
        if media == "image/png":
            png_q = max(png_q, q)
        elif media in _JSON_RANGES:
            json_q = max(json_q, q)
    return png_q > 0 and png_q >= json_q


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0


def wants_event_stream(scope: Scope) -> bool:
    """True if the Accept header names text/event-stream (with a quality above 0): the client
    asks for server-sent events."""
    accept = header(scope, b"accept")
    if b"text/event-stream" not in accept:
        return False
    for item in accept.decode("latin-1").split(","):
        media, _, params = item.strip().partition(";")
        if media.strip().lower() == "text/event-stream" and _quality(params) > 0:
            return True
    return False


def check_columns(columns: int | None, as_grid: bool) -> None:
    if columns is not None and not as_grid:
        raise InvalidInput("columns: applies to a PNG grid, asked for with 'Accept: image/png'")

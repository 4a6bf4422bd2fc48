"""The answers that a FastAPI route and the fast lane (``api/fastlane.py``) send alike:
``POST /sample`` (``sample_answer``) and ``POST /v2/models/{m}/infer`` (``infer_answer``), the
two requests of the hot path. Each calls its operation by name, inside the shared ``running``
context (or, for v2, its deadline)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread

from service.api.content import check_columns, header, wants_png
from service.api.running import Answer, Call, Running, request_class, running
from service.api.schemas import SampleRequest, SampleResponse
from service.errors import InvalidInput, PayloadTooLarge
from service.generation.autoregressive import RowWatch
from service.generation.imaging import grid_of, images_as
from service.generation.specs import SampleSpec
from service.inference_protocol import models
from service.inference_protocol.tensors import (
    HEADER_LENGTH,
    decode_request,
    encode_response,
    requested_outputs,
)
from service.registry.families import Operation

INLINE_BYTES = 64 * 1024
T = TypeVar("T")


async def sample_answer(call: Call, body: SampleRequest, watch: RowWatch | None = None) -> Answer:
    """``POST /sample``'s answer: the route's, the fast lane's and the event stream's."""
    as_grid = wants_png(call.scope)
    check_columns(body.columns, as_grid)
    spec = SampleSpec(body.n, body.seed, body.temperature, body.truncation, body.label)
    finish = grid_of(body.columns, body.scale) if as_grid else images_as(body.format, body.scale)
    async with running(call, Operation.SAMPLE, body.model, body.timeout_ms, watch) as run:
        result = await run.operations.sample(run.model, spec, finish, run.watch)
    run.count(result)
    assert result.seed is not None  # a sample always has one
    if as_grid:
        headers = {
            "X-Seed": str(result.seed),
            "X-Model": result.model,
            "X-Model-Version": str(result.version),
        }
        if result.labels is not None:
            headers["X-Labels"] = ",".join(result.labels)
        return Answer(result.payload, "image/png", headers)
    response = SampleResponse.model_construct(
        model=result.model,
        version=result.version,
        seed=result.seed,
        shape=list(result.shape),
        images=result.payload,
        labels=result.labels,
    )
    return Answer(response.model_dump_json(exclude_none=True).encode(), "application/json")


async def infer_answer(call: Call, name: str, version: str | None, body: bytes) -> Answer:
    """``POST /v2/models/{name}[/versions/{version}]/infer``'s answer: the route's and the fast
    lane's. The model is the v2 model the path names, so it is resolved here, not by
    ``running``; the deadline is Triton's ``timeout`` parameter."""
    app = call.app
    klass = request_class(call)
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
    async with Running(app, v2.model, v2.kind.value, timeout_ms, request_class=klass):
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

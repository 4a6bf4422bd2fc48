from typing import Any

from fastapi import APIRouter, Request, Response

from service.api.content import wants_png
from service.api.running import (
    check_columns,
    grid_of,
    images_as,
    operation_route,
    run_operation,
)
from service.api.schemas import SampleRequest, SampleResponse
from service.generation.specs import SampleSpec
from service.registry.families import Operation

router = APIRouter(tags=["generate"])

_PNG_GRID = {
    "description": "With `Accept: image/png`: one PNG grid of all images; the seed, model and "
    "version come in the X-Seed, X-Model and X-Model-Version headers, a conditional model's "
    "classes in X-Labels (comma-separated).",
    "content": {"image/png": {}},
}


@operation_route(router, "/sample", SampleResponse, image=_PNG_GRID)
async def sample(request: Request, body: SampleRequest | None = None) -> Any:
    """Draw `n` images. The seed used is always echoed, so every sample can be reproduced:
    image i of seed s is the same whatever `n` is. A conditional model (cvae) draws the class
    `label`, or each image's class from the seed; the response lists them."""
    body = body or SampleRequest()
    as_grid = wants_png(request)
    check_columns(body.columns, as_grid)
    spec = SampleSpec(body.n, body.seed, body.temperature, body.truncation, body.label)
    finish = grid_of(body.columns, body.scale) if as_grid else images_as(body.format, body.scale)
    result = await run_operation(request, Operation.SAMPLE, body.model, spec, finish)
    if as_grid:
        headers = {
            "X-Seed": str(result.seed),
            "X-Model": result.model,
            "X-Model-Version": str(result.version),
        }
        if result.labels is not None:
            headers["X-Labels"] = ",".join(result.labels)
        return Response(result.payload, media_type="image/png", headers=headers)
    assert result.seed is not None  # a sample always has one
    response = SampleResponse(
        model=result.model,
        version=result.version,
        seed=result.seed,
        shape=list(result.shape),
        images=result.payload,
        labels=result.labels,
    )
    return Response(response.model_dump_json(exclude_none=True), media_type="application/json")

from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from service import operations
from service.api.content import wants_png
from service.api.deps import LimitsDep, MetricsDep, RegistryDep, resolve_model
from service.api.schemas import SampleRequest, SampleResponse, error_responses
from service.families import Operation
from service.imaging import encode_images, grid_png
from service.labels import label_names

router = APIRouter(tags=["generate"])

_PNG_GRID = {
    "description": "With `Accept: image/png`: one PNG grid of all images; the seed, model and "
    "version come in the X-Seed, X-Model and X-Model-Version headers, a conditional model's "
    "classes in X-Labels (comma-separated).",
    "content": {"image/png": {}},
}


@router.post(
    "/sample",
    response_model=SampleResponse,
    responses={200: _PNG_GRID, **error_responses(404, 413, 422, 503)},
)
async def sample(
    request: Request,
    registry: RegistryDep,
    limits: LimitsDep,
    metrics: MetricsDep,
    body: SampleRequest | None = None,
) -> Any:
    """Draw `n` images. The seed used is always echoed, so every sample can be reproduced:
    image i of seed s is the same whatever `n` is. A conditional model (cvae) draws the class
    `label`, or each image's class from the seed; the response lists them."""
    body = body or SampleRequest()
    model = resolve_model(request, registry, body.model, Operation.SAMPLE)
    seed = body.seed if body.seed is not None else operations.new_seed()
    as_grid = wants_png(request)

    def finish(images: np.ndarray) -> tuple[list[int], Any]:
        return list(images.shape), grid_png(images) if as_grid else encode_images(
            images, body.format
        )

    shape, payload = await operations.sample(
        model,
        body.n,
        seed,
        limits,
        body.temperature,
        body.truncation,
        finish,
        request.app.state.autoregressive_limiter,
        body.label,
    )
    metrics.images.labels(model.name, Operation.SAMPLE.value).inc(body.n)
    card = model.ready_card
    classes = operations.sample_labels(card, body.label, body.n, seed)
    names = None if classes is None else label_names(card, classes)
    if as_grid:
        headers = {"X-Seed": str(seed), "X-Model": model.name, "X-Model-Version": str(card.version)}
        if names is not None:
            headers["X-Labels"] = ",".join(names)
        return Response(payload, media_type="image/png", headers=headers)
    response = SampleResponse(
        model=model.name, version=card.version, seed=seed, shape=shape, images=payload, labels=names
    )
    return Response(response.model_dump_json(exclude_none=True), media_type="application/json")

from typing import Any

from fastapi import APIRouter, Request

from service.api.running import Call, operation_route, running
from service.api.schemas import EncodeRequest, EncodeResponse
from service.generation.specs import EncodeSpec
from service.registry.families import Operation

router = APIRouter(tags=["latent"])


@operation_route(router, "/encode", EncodeResponse, exclude_none=True)
async def encode(body: EncodeRequest, request: Request) -> Any:
    """Encode images: `{mean, log_var}` for a VAE, `{z}` for an autoencoder. A conditional model
    needs each image's `label`."""
    spec = EncodeSpec(body.images, body.label)
    async with running(Call.of(request), Operation.ENCODE, body.model, body.timeout_ms) as run:
        result = await run.operations.encode(run.model, spec)
    lists = {name: value.tolist() for name, value in result.payload.items()}
    return EncodeResponse(model=result.model, version=result.version, **lists)

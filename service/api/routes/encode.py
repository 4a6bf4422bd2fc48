from typing import Any

from fastapi import APIRouter, Request

from service.api.running import operation_route, run_request
from service.api.schemas import EncodeRequest, EncodeResponse
from service.generation.specs import EncodeSpec
from service.registry.families import Operation

router = APIRouter(tags=["latent"])


@operation_route(router, "/encode", EncodeResponse, exclude_none=True)
async def encode(body: EncodeRequest, request: Request) -> Any:
    """Encode images: `{mean, log_var}` for a VAE, `{z}` for an autoencoder. A conditional model
    needs each image's `label`."""
    spec = EncodeSpec(body.images, body.label)
    result = await run_request(request, Operation.ENCODE, body, spec)
    lists = {name: value.tolist() for name, value in result.payload.items()}
    return EncodeResponse(model=result.model, version=result.version, **lists)

from typing import Any

from fastapi import APIRouter, Request

from service.api.running import run_operation
from service.api.schemas import EncodeRequest, EncodeResponse, error_responses
from service.generation.specs import EncodeSpec
from service.registry.families import Operation

router = APIRouter(tags=["latent"])


@router.post(
    "/encode",
    response_model=EncodeResponse,
    response_model_exclude_none=True,
    responses=error_responses(404, 413, 422, 503),
)
async def encode(body: EncodeRequest, request: Request) -> Any:
    """Encode images: `{mean, log_var}` for a VAE, `{z}` for an autoencoder. A conditional model
    needs each image's `label`."""
    spec = EncodeSpec(body.images, body.label)
    result = await run_operation(request, Operation.ENCODE, body.model, spec)
    lists = {name: value.tolist() for name, value in result.payload.items()}
    return EncodeResponse(model=result.model, version=result.version, **lists)

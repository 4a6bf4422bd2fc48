from typing import Any

from fastapi import APIRouter, Request

from service import operations
from service.api.deps import LimitsDep, RegistryDep, resolve_model
from service.api.schemas import EncodeRequest, EncodeResponse, error_responses
from service.families import Operation

router = APIRouter(tags=["latent"])


@router.post(
    "/encode",
    response_model=EncodeResponse,
    response_model_exclude_none=True,
    responses=error_responses(404, 413, 422, 503),
)
async def encode(
    body: EncodeRequest, request: Request, registry: RegistryDep, limits: LimitsDep
) -> Any:
    """Encode images: `{mean, log_var}` for a VAE, `{z}` for an autoencoder. A conditional model
    needs each image's `label`."""
    model = resolve_model(request, registry, body.model, Operation.ENCODE)
    out = await operations.encode(model, body.images, limits, body.label)
    lists = {name: value.tolist() for name, value in out.items()}
    return EncodeResponse(model=model.name, version=model.ready_card.version, **lists)

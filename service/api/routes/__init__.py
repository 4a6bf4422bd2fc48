from fastapi import APIRouter

from service.api.routes import (
    admin,
    encode,
    health,
    interpolate,
    metrics,
    models,
    reconstruct,
    sample,
    ui,
    v2,
)

api_router = APIRouter()
for module in (health, models, sample, encode, reconstruct, interpolate, metrics, ui, v2, admin):
    api_router.include_router(module.router)

from fastapi import APIRouter

from service.api.routes import (
    admin,
    complete,
    encode,
    health,
    interpolate,
    metrics,
    models,
    reconstruct,
    sample,
    score,
    traverse,
    ui,
    v2,
)

api_router = APIRouter()
for module in (
    health,
    models,
    sample,
    encode,
    reconstruct,
    interpolate,
    score,
    complete,
    traverse,
    metrics,
    ui,
    v2,
    admin,
):
    api_router.include_router(module.router)

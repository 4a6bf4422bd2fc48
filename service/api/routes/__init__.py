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

ROUTERS: list[APIRouter] = [
    module.router
    for module in (
        sample,  # first: routes are matched in order, and /sample is the hot path
        health,
        models,
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
    )
]

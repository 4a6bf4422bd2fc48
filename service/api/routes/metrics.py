from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_model=str, response_class=PlainTextResponse)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text exposition of this app's metrics."""
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

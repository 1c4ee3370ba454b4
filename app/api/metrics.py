"""``GET /metrics``: the Prometheus exposition of every process of the server (admin), issue 23
point 4. ``metrics.port`` serves the same without a token on an address of its own
(:mod:`app.telemetry`)."""

from fastapi import APIRouter
from starlette.responses import Response

from app.api.deps import ServicesDep
from app.api.security import requires
from app.auth.principal import Permission

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    operation_id="metrics-exposition",
    summary="Prometheus metrics of every worker (admin)",
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain; version=0.0.4; charset=utf-8": {}},
        }
    },
)
async def exposition(services: ServicesDep) -> Response:
    body, media_type = await services.metrics.exposition()
    return Response(body, media_type=media_type)

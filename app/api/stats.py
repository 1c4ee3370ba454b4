"""``GET /api/stats``: usage figures of the archive (admin), issue 23 point 6 (what
``lightbox stats`` prints)."""

from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from app.api.deps import ServicesDep
from app.api.security import requires
from app.auth.principal import Permission

router = APIRouter(tags=["stats"])


@router.get(
    "/api/stats",
    operation_id="stats-usage",
    summary="Studies, series, instances and bytes: totals, by modality, month, tier (admin)",
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={200: {"description": "the usage figures", "content": {"application/json": {}}}},
)
async def usage(
    services: ServicesDep,
    largest: Annotated[int, Query(ge=0, le=100, description="largest studies listed")] = 10,
) -> Response:
    report = await services.stats.report(largest=largest)
    return Response(orjson.dumps(report.to_json()), media_type="application/json")

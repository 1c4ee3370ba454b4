"""``/admin/usage``: studies, series, instances and bytes in all, by modality and by month
received, growth and the largest studies: the usage report of ``GET /api/stats``
(``services.stats``, issue 23). No patient data: studies are named by their UID."""

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from app.api.deps import ServicesDep
from app.api.security import page
from app.auth.principal import Permission
from app.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/admin/usage", response_class=HTMLResponse, openapi_extra=page(Permission.ADMIN))
async def usage(request: Request, services: ServicesDep) -> HTMLResponse:
    # the stats service is issue 23's (ops-observe); a server without it says so
    stats: Any = getattr(services, "stats", None)
    report = None if stats is None else (await stats.report(largest=10)).to_json()
    return render(request, "admin/usage.html", {"report": report})

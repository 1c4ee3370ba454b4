"""``/admin/dimse``: the DIMSE side: this server's AE title and port, the remote AEs it knows
(C-MOVE destinations, pull sources) and, where the DIMSE jobs have landed, the pull jobs."""

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from app.api.deps import ServicesDep, SettingsDep
from app.api.security import page
from app.auth.principal import Permission
from app.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/admin/dimse", response_class=HTMLResponse, openapi_extra=page(Permission.ADMIN))
async def dimse(request: Request, services: ServicesDep, settings: SettingsDep) -> HTMLResponse:
    peers = await services.aes.list()
    # the pull jobs of issue 21 (dimse helpers): shown once that service is on this server
    jobs_service: Any = getattr(services, "jobs", None)
    jobs = None
    if jobs_service is not None:
        jobs, _ = await jobs_service.page(limit=50, offset=0)
    return render(
        request,
        "admin/dimse.html",
        {"dimse": settings.dimse, "peers": peers, "jobs": jobs},
    )

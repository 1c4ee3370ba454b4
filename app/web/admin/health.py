"""``/admin`` and ``/admin/health``: whether the index and the object store answer, the audit
queue, the version; with the links to the other administration pages."""

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from app import ohif
from app.api.deps import ServicesDep, SettingsDep
from app.api.security import page
from app.auth.principal import Permission
from app.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/admin", response_class=HTMLResponse, openapi_extra=page(Permission.ADMIN))
@router.get("/admin/health", response_class=HTMLResponse, openapi_extra=page(Permission.ADMIN))
async def health(request: Request, services: ServicesDep, settings: SettingsDep) -> HTMLResponse:
    report = await services.health.report()
    return render(
        request,
        "admin/health.html",
        {
            "report": report,
            "ohif": ohif.installed(settings.data_dir),
            "workers": settings.workers,
            "dimse": settings.dimse,
        },
    )

"""The about page (``/about``): what the signed-in user may do, given their permissions, and
how programs reach the same service (DICOMweb, the API, tokens)."""

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from app.api.deps import SettingsDep
from app.api.security import page
from app.api.urls import service_base
from app.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/about", response_class=HTMLResponse, openapi_extra=page())
async def about(request: Request, settings: SettingsDep) -> HTMLResponse:
    return render(
        request,
        "about.html",
        {
            "dicomweb": service_base(request, settings),
            "api_docs": settings.auth.public_api_docs,
        },
    )

"""The home page (``/``): what the signed-in user may do, given their permissions."""

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from app.api.deps import SettingsDep
from app.api.security import page
from app.api.urls import service_base
from app.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse, openapi_extra=page())
async def home(request: Request, settings: SettingsDep) -> HTMLResponse:
    return render(
        request,
        "home.html",
        {
            "dicomweb": service_base(request, settings),
            "api_docs": settings.auth.public_api_docs,
        },
    )

"""``/admin/shares``: every share link, whoever made it, each revocable (the maker's own page is
``/shares``; revoking posts to the same route, which lets an administrator revoke any)."""

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from app.api.deps import ServicesDep
from app.api.security import page
from app.auth.principal import Permission
from app.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/admin/shares", response_class=HTMLResponse, openapi_extra=page(Permission.ADMIN))
async def all_shares(request: Request, services: ServicesDep) -> HTMLResponse:
    links = await services.shares.list(maker=None, limit=500)
    return render(request, "shares/list.html", {"links": links, "everyone": True})

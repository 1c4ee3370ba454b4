"""``/admin/users``: the embedded users and their roles (web-auth's user service,
``services.users``): listed, enabled or disabled, their role changed. Passwords are set with
``lightbox user passwd`` on the server (never through a page)."""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import CallerDep, ServicesDep
from app.api.security import note, page
from app.auth.principal import Permission
from app.errors import NotFound
from app.web.templating import render

router = APIRouter(include_in_schema=False)


def _users(services: ServicesDep) -> Any:
    return getattr(services, "users", None)


@router.get("/admin/users", response_class=HTMLResponse, openapi_extra=page(Permission.ADMIN))
async def users(request: Request, services: ServicesDep) -> HTMLResponse:
    directory = _users(services)
    listed = None if directory is None else await directory.list()
    return render(request, "admin/users.html", {"users": listed})


@router.post(
    "/admin/users/{username}",
    response_class=HTMLResponse,
    openapi_extra=page(Permission.ADMIN, audited=True),
)
async def change_user(
    request: Request,
    username: str,
    services: ServicesDep,
    caller: CallerDep,
    enabled: Annotated[str | None, Form()] = None,
    role: Annotated[str | None, Form()] = None,
) -> Response:
    """Enable or disable a user, or change their role (the user service audits it)."""
    directory = _users(services)
    if directory is None:
        raise NotFound("this server has no user directory")
    if enabled in ("true", "false"):
        await directory.set_enabled(username, enabled == "true", by=caller.subject)
        note(request, action="user-enable" if enabled == "true" else "user-disable")
    if role:
        await directory.set_role(username, role, by=caller.subject)
        note(request, action="user-role", detail=f"{username}: {role}")
    return RedirectResponse("/admin/users", status_code=303)

"""Signing in and out: the sign-in page, its form, and logout (issue 22, point 1).

The form is protected against login CSRF (a forged sign-in into the attacker's account): it
carries a token bound to a random pre-login cookie (``SameSite=Lax``, so a cross-site POST does
not carry it). Errors are one generic message whatever went wrong (an unknown user, a wrong
password, a disabled or locked account): the page never says which names exist.
"""

import secrets
from typing import Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import ServicesDep, SettingsDep
from app.api.security import ANONYMOUS_ROUTE, LOGIN_PATH, page
from app.api.security.cookies import cookie_header
from app.api.security.middleware import client_source
from app.api.security.sessions import (
    clear_session_cookie,
    is_secure,
    request_session,
    set_session_cookie,
)
from app.auth.sessions import LOCAL_IDP
from app.config import Settings
from app.errors import BadRequest, PayloadTooLarge
from app.services.logins import GENERIC_FAILURE, LoginRefused
from app.web.navigation import local_path
from app.web.templating import render

router = APIRouter(include_in_schema=False)

#: the pre-login cookie the sign-in form's CSRF token is bound to
LOGIN_COOKIE: Final = "lightbox-login"
LOGIN_COOKIE_SECONDS: Final = 3600
#: the largest sign-in form body read (a name, a password of at most 1,024 characters, tokens)
MAX_FORM_BYTES: Final = 16 * 1024
EXPIRED_FORM: Final = "The sign-in form has expired. Please sign in again."


def _login_cookie(nonce: str, *, secure: bool, max_age: int = LOGIN_COOKIE_SECONDS) -> str:
    return cookie_header(LOGIN_COOKIE, nonce, path=LOGIN_PATH, max_age=max_age, secure=secure)


def login_page(
    request: Request,
    services: ServicesDep,
    settings: Settings,
    *,
    next_path: str = "/",
    username: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    """The sign-in page, with a fresh pre-login cookie and the form's CSRF token for it."""
    auth = settings.auth
    password_login = auth.enabled and auth.local_key
    context = {
        "auth_enabled": auth.enabled,
        "password_login": password_login,
        "oidc_login": auth.enabled and services.oidc is not None,
        "oidc_label": services.oidc.label if services.oidc is not None else "",
        "next": local_path(next_path),
        "username": username,
        "error": error,
        "login_csrf": "",
    }
    headers: dict[str, str] = {}
    if password_login:
        nonce = secrets.token_urlsafe(24)
        context["login_csrf"] = services.sessions.signer.login_csrf_token(nonce)
        headers["set-cookie"] = _login_cookie(nonce, secure=is_secure(request, settings))
    return render(request, "login.html", context, status_code=status_code, headers=headers)


@router.get(LOGIN_PATH, response_class=HTMLResponse, openapi_extra=page(ANONYMOUS_ROUTE))
async def login_form(
    request: Request, services: ServicesDep, settings: SettingsDep, next: str = "/"
) -> Response:
    return login_page(request, services, settings, next_path=next)


async def _form(request: Request) -> dict[str, str]:
    """The sign-in form's fields, read with a bound (the route is open to anyone: no body of
    any size is parsed for it)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise BadRequest("the sign-in form is sent as application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLarge("the sign-in form is too large")
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("the sign-in form is malformed") from exc
    return dict(fields)


@router.post(LOGIN_PATH, response_class=HTMLResponse, openapi_extra=page(ANONYMOUS_ROUTE))
async def login_submit(request: Request, services: ServicesDep, settings: SettingsDep) -> Response:
    """Check the form; on success a new session (never the one a cookie may already name, so no
    session can be fixed in advance) and the way to where the user was going."""
    form = await _form(request)
    username = form.get("username", "")
    next_path = local_path(form.get("next"))
    if not (settings.auth.enabled and settings.auth.local_key):
        return login_page(request, services, settings, next_path=next_path, status_code=404)

    def refused(error: str, status_code: int) -> Response:
        """The form again, with the name typed and why it was refused."""
        return login_page(
            request,
            services,
            settings,
            next_path=next_path,
            username=username[:256],
            error=error,
            status_code=status_code,
        )

    signer = services.sessions.signer
    if not signer.login_csrf_valid(request.cookies.get(LOGIN_COOKIE), form.get("csrf_token")):
        return refused(EXPIRED_FORM, 400)
    source = client_source(request.scope, frozenset(settings.trusted_proxies))
    try:
        signed = await services.logins.password(username, form.get("password", ""), source=source)
    except LoginRefused:
        return refused(GENERIC_FAILURE, 401)
    session = await services.sessions.start(
        signed.subject, signed.permissions, name=signed.name, idp=LOCAL_IDP
    )
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, request, settings, session.token, session.claims)
    response.headers.append(
        "set-cookie", _login_cookie("", secure=is_secure(request, settings), max_age=0)
    )
    return response


@router.post("/logout", openapi_extra=page())
async def logout(request: Request, services: ServicesDep, settings: SettingsDep) -> Response:
    """End the session (its CSRF token was checked by the guard) and go to the sign-in page."""
    claims = request_session(request)
    if claims is not None:
        source = client_source(request.scope, frozenset(settings.trusted_proxies))
        await services.sessions.end(claims, source=source)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    clear_session_cookie(response, request, settings)
    return response

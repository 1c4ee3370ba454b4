"""Signing in with the OpenID Connect issuer (issue 22, point 1): ``/login/oidc`` sends the
browser to the issuer, ``/login/oidc/callback`` is where it comes back with a code.

The sign-in in progress (its ``state``, ``nonce`` and PKCE verifier, sealed) waits in a cookie
of its own, for these two paths only, for ten minutes: HttpOnly, ``SameSite=Lax`` (sent on the
issuer's top-level redirect back, not on a cross-site request of any other kind), Secure under
HTTPS. Both routes are open to anyone (the person is not signed in yet); only configured
servers have them (:func:`app.web.install_web`).
"""

from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from app.api.deps import ServicesDep, SettingsDep
from app.api.security import ANONYMOUS_ROUTE, LOGIN_PATH, page
from app.api.security.cookies import cookie_header
from app.api.security.middleware import client_source
from app.api.security.sessions import is_secure, set_session_cookie
from app.api.urls import site_base
from app.config import Settings
from app.services.oidc_login import TRANSACTION_SECONDS, OidcLoginFailed
from app.web.login import login_page
from app.web.navigation import local_path

router = APIRouter(include_in_schema=False)

OIDC_PATH: Final = f"{LOGIN_PATH}/oidc"
CALLBACK_PATH: Final = f"{OIDC_PATH}/callback"
TRANSACTION_COOKIE: Final = "lightbox-oidc"


def _transaction_cookie(value: str, *, secure: bool, max_age: int) -> str:
    return cookie_header(TRANSACTION_COOKIE, value, path=OIDC_PATH, max_age=max_age, secure=secure)


def redirect_uri(request: Request, settings: Settings) -> str:
    """The callback URL, as registered at the issuer."""
    return settings.auth.oidc_redirect_uri or f"{site_base(request, settings)}{CALLBACK_PATH}"


@router.get(OIDC_PATH, openapi_extra=page(ANONYMOUS_ROUTE))
async def oidc_begin(
    request: Request, services: ServicesDep, settings: SettingsDep, next: str = "/"
) -> Response:
    assert services.oidc is not None  # the route exists only when it is configured
    next_path = local_path(next)
    try:
        started = await services.oidc.begin(
            next_path=next_path, redirect_uri=redirect_uri(request, settings)
        )
    except OidcLoginFailed as failed:
        return login_page(
            request, services, settings, next_path=next_path, error=failed.message, status_code=502
        )
    response = RedirectResponse(started.url, status_code=303)
    response.headers.append(
        "set-cookie",
        _transaction_cookie(
            started.transaction,
            secure=is_secure(request, settings),
            max_age=TRANSACTION_SECONDS,
        ),
    )
    response.headers["cache-control"] = "no-store"
    return response


@router.get(CALLBACK_PATH, openapi_extra=page(ANONYMOUS_ROUTE))
async def oidc_callback(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    iss: str | None = None,
) -> Response:
    assert services.oidc is not None
    secure = is_secure(request, settings)
    try:
        session, next_path = await services.oidc.complete(
            request.cookies.get(TRANSACTION_COOKIE),
            state=state,
            code=code,
            error=error,
            source=client_source(request.scope, frozenset(settings.trusted_proxies)),
            issuer=iss,
        )
    except OidcLoginFailed as failed:
        response = login_page(request, services, settings, error=failed.message, status_code=400)
    else:
        response = RedirectResponse(local_path(next_path), status_code=303)
        set_session_cookie(response, request, settings, session.token, session.claims)
    # the sign-in is over either way: its secrets are not kept
    response.headers.append("set-cookie", _transaction_cookie("", secure=secure, max_age=0))
    return response

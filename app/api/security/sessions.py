"""The session cookie on the HTTP side: its name and attributes, reading it, renewing it, and
the CSRF check of the requests it authenticates (issue 22, point 1).

The cookie is HttpOnly (scripts never see the token), ``SameSite=Lax`` and, under HTTPS (the
request's own scheme, or ``X-Forwarded-Proto`` from a trusted proxy, or an https
``public_base_url``), ``Secure`` with the ``__Host-`` prefix (no ``Domain``, ``Path=/``: a
sibling subdomain cannot plant one). Lax rather than Strict: a Strict cookie is not sent on the
top-level navigation that arrives from elsewhere (a link in a report, the OpenID provider's
redirect back after sign-in), which would show the sign-in page to a signed-in user; Lax still
keeps it off every cross-site POST, DELETE, fetch and frame, and GET requests change nothing.

CSRF: every state-changing request (any method but GET, HEAD, OPTIONS) authenticated by the
cookie must present the session's CSRF token, in ``X-CSRF-Token`` (htmx, scripts; STOW-RS and
DELETE to the DICOMweb root too) or, on pages, in a form's ``csrf_token`` field. Requests with an
``Authorization`` header do not use the cookie and are not affected.
"""

from typing import Final

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.security.cookies import cookie_header
from app.auth.sessions import SessionClaims
from app.config import Settings

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_STATE",
    "SessionRenewal",
    "clear_session_cookie",
    "cookie_name",
    "is_secure",
    "request_session",
    "session_cookie",
    "session_cookie_header",
    "set_session_cookie",
]

COOKIE: Final = "lightbox-session"
SECURE_COOKIE: Final = "__Host-lightbox-session"
CSRF_HEADER: Final = "x-csrf-token"
CSRF_FIELD: Final = "csrf_token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: ``request.state`` keys: the session claims of a request the cookie authenticated, and the
#: Set-Cookie value of its renewed token
SESSION_STATE: Final = "session"
RENEWAL_STATE: Final = "session_renewal"


def is_secure(request: Request, settings: Settings) -> bool:
    """Whether the browser reached us over HTTPS (directly, or through a trusted proxy)."""
    if request.url.scheme == "https":
        return True
    client = request.client.host if request.client else None
    if client is not None and client in settings.trusted_proxies:
        proto = request.headers.get("x-forwarded-proto", "")
        if proto.split(",")[0].strip().lower() == "https":
            return True
    return bool(settings.public_base_url and settings.public_base_url.startswith("https://"))


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else COOKIE


def session_cookie(request: Request, settings: Settings) -> str | None:
    """The session token the browser sent (only the cookie named for this request's scheme)."""
    value = request.cookies.get(cookie_name(is_secure(request, settings)))
    return value or None


def session_cookie_header(token: str, max_age: int, *, secure: bool) -> str:
    """The ``Set-Cookie`` value that stores a session token (``max_age`` 0 removes it)."""
    return cookie_header(cookie_name(secure), token, path="/", max_age=max_age, secure=secure)


def set_session_cookie(
    response: Response, request: Request, settings: Settings, token: str, claims: SessionClaims
) -> None:
    """Store the session in the browser until the token expires: for the token's lifetime, as a
    renewal does (``expires_at - issued_at``: the clock read again here could cross a second)."""
    max_age = claims.expires_at - claims.issued_at
    response.headers.append(
        "set-cookie", session_cookie_header(token, max_age, secure=is_secure(request, settings))
    )


def clear_session_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.headers.append(
        "set-cookie", session_cookie_header("", 0, secure=is_secure(request, settings))
    )


def request_session(request: Request) -> SessionClaims | None:
    """The session that authenticated this request (``None``: a bearer token, or none)."""
    claims: SessionClaims | None = getattr(request.state, SESSION_STATE, None)
    return claims


class SessionRenewal:
    """Sends the renewed session token a request's authentication made (``Set-Cookie``).

    Only requests that carry a cookie are watched; the others pass straight through.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(
            name == b"cookie" for name, _ in scope.get("headers", ())
        ):
            await self.app(scope, receive, send)
            return

        async def send_renewed(message: Message) -> None:
            if message["type"] == "http.response.start":
                renewal = (scope.get("state") or {}).get(RENEWAL_STATE)
                if renewal is not None:
                    headers = MutableHeaders(scope=message)
                    headers.append("set-cookie", renewal)
            await send(message)

        await self.app(scope, receive, send_renewed)

"""Web page test helpers: an app with access control on, and browsers signed in to it.

``signed_in`` opens a session as the sign-in page would (the services' own session, the cookie
the server sets), so page tests need no password: ``async with web_client(settings) as (services,
http): await signed_in(http, services, permissions=["read"])``.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from http.cookiejar import Cookie

import httpx

from app.api.security.sessions import COOKIE
from app.auth.principal import Permission
from app.auth.sessions import LOCAL_IDP
from app.config import Settings
from app.main import create_app
from app.services.container import Services, open_services
from app.services.sessions import Session
from tests.conftest import truncate

ALL = ("read", "write", "delete", "admin")


@asynccontextmanager
async def web_client(
    settings: Settings, *, client_addr: tuple[str, int] = ("127.0.0.1", 50000)
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """Services (index emptied) and a client of an app on them, keeping cookies as a browser
    does (redirects are not followed: tests look at them)."""
    async with open_services(settings) as services:
        await truncate(services.db)
        app = create_app(settings, services=services)
        transport = httpx.ASGITransport(app=app, client=client_addr)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield services, http


async def signed_in(
    http: httpx.AsyncClient,
    services: Services,
    *,
    subject: str = "alice",
    permissions: Sequence[str] = ALL,
    name: str | None = None,
    idp: str = LOCAL_IDP,
) -> Session:
    """A session for ``subject``, its cookie set in ``http`` as the server sets it (host-only,
    for the client's host: a Set-Cookie of the server replaces or removes it)."""
    session = await services.sessions.start(
        subject, [Permission(p) for p in permissions], name=name or subject, idp=idp
    )
    set_cookie(http, COOKIE, session.token)
    return session


def set_cookie(http: httpx.AsyncClient, name: str, value: str, *, path: str = "/") -> None:
    """Store a cookie as a ``Set-Cookie`` from the server without ``Domain`` would: host-only,
    so that the server's later ``Set-Cookie`` of that name replaces or removes it."""
    host = http.base_url.host
    http.cookies.jar.set_cookie(
        Cookie(
            version=0,
            name=name,
            value=value,
            port=None,
            port_specified=False,
            # the cookie jar's name of a host without a dot (RFC 2965's effective host name)
            domain=host if "." in host else f"{host}.local",
            domain_specified=False,
            domain_initial_dot=False,
            path=path,
            path_specified=True,
            secure=False,
            expires=None,
            discard=True,
            comment=None,
            comment_url=None,
            rest={"HttpOnly": ""},
        )
    )


def csrf_header(services: Services, session: Session) -> dict[str, str]:
    """The header that carries the session's CSRF token (as htmx sends it)."""
    return {"X-CSRF-Token": services.sessions.csrf_token(session.claims)}

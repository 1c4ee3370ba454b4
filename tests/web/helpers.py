"""Web page test helpers: an app with access control on, and browsers signed in to it.

``signed_in`` opens a session as the sign-in page would (the services' own session, the cookie
the server sets), so page tests need no password: ``async with web_client(settings) as (services,
http): await signed_in(http, services, permissions=["read"])``.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

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
    """A session for ``subject``, its cookie set in ``http``."""
    session = await services.sessions.start(
        subject, [Permission(p) for p in permissions], name=name or subject, idp=idp
    )
    http.cookies.set(COOKIE, session.token)
    return session


def csrf_header(services: Services, session: Session) -> dict[str, str]:
    """The header that carries the session's CSRF token (as htmx sends it)."""
    return {"X-CSRF-Token": services.sessions.csrf_token(session.claims)}

"""Jinja2 templates (``app/web/templates``): autoescaped, always.

Every template is rendered with HTML autoescaping on, whatever its file name, so a value from
the index (a patient name holding ``<script>``) is text, never markup; nothing in the pages marks
a value ``safe``. Undefined names are errors, not empty strings.

:func:`render` gives every page what the layout needs (:class:`PageContext`): who is signed in
and what they may do, the CSRF token of their session, and the URLs of the static files.
"""

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import HTMLResponse

from app import __version__
from app.api.security.sessions import request_session
from app.auth.principal import Permission, Principal
from app.config import Settings

__all__ = ["STATIC_DIR", "PageContext", "environment", "page_context", "render", "static_url"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: the prefix the static files are served under (:mod:`app.web.static`)
STATIC_PREFIX = "/static"


@functools.lru_cache(maxsize=256)
def _fingerprint(name: str) -> str:
    path = (STATIC_DIR / name).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise ValueError(f"no static file {name!r}")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """The URL of a static file, with its content's fingerprint (so it can be cached for good).

    >>> static_url("vendor/htmx/htmx.min.js").startswith("/static/vendor/htmx/htmx.min.js?v=")
    True
    """
    return f"{STATIC_PREFIX}/{name}?v={_fingerprint(name)}"


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    """The templates' environment (one per process; templates are compiled once)."""
    env = Environment(
        loader=PackageLoader("app.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals["static_url"] = static_url
    env.globals["version"] = __version__
    return env


@dataclass(frozen=True, slots=True)
class PageContext:
    """What every page's layout shows: the signed-in user, their permissions, the session's
    CSRF token (empty when the page was not reached with the session cookie)."""

    principal: Principal | None
    name: str
    csrf_token: str
    #: whether the user signed in here (and can sign out); false with a bearer token, or with
    #: access control off
    signed_in: bool
    auth_enabled: bool

    def may(self, permission: Permission | str) -> bool:
        """Whether the user has ``permission`` (templates: ``page.may("write")``)."""
        return self.principal is not None and self.principal.allows(Permission(permission))

    @property
    def permissions(self) -> list[str]:
        if self.principal is None:
            return []
        return [p.value for p in Permission if p in self.principal.permissions]


def page_context(request: Request) -> PageContext:
    """The layout's context for this request (after the guard ran, for pages that have one)."""
    settings: Settings = request.app.state.settings
    principal: Principal | None = getattr(request.state, "principal", None)
    session = request_session(request)
    csrf = request.app.state.services.sessions.csrf_token(session) if session else ""
    if session is not None:
        name = session.name
    elif principal is not None and not principal.anonymous:
        name = principal.subject
    else:
        name = ""
    return PageContext(
        principal=principal,
        name=name,
        csrf_token=csrf,
        signed_in=session is not None,
        auth_enabled=settings.auth.enabled,
    )


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A page: ``template`` rendered with ``context``, the layout's ``page`` and ``request``."""
    values = {"request": request, "page": page_context(request), **(context or {})}
    body = environment().get_template(template).render(values)
    return HTMLResponse(body, status_code=status_code, headers=dict(headers or {}))

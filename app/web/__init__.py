"""The web front end (issue 22): server-rendered pages for people, beside the API.

Pages are FastAPI routes declared with :func:`app.api.security.page` (not in the OpenAPI
document): the application-wide guard authenticates them with the session cookie (or a bearer
token), sends a browser that is not signed in to ``/login``, and checks the CSRF token of every
state-changing request. Routes are thin: one service call, then :func:`~app.web.templating.render`
of a Jinja2 template (``templates/``, autoescaped). Behaviour in the browser comes from htmx
(vendored in ``static/vendor/htmx``) and our own scripts under ``static/``; nothing is built.

The modules: :mod:`.templating` the templates and what every page gets, :mod:`.headers` the
Content-Security-Policy and other security headers, :mod:`.assets` the static files,
:mod:`.errors` errors as pages, :mod:`.navigation` redirect targets, :mod:`.login` signing in
and out, :mod:`.oidc` signing in with the OpenID Connect issuer; the pages: :mod:`.home` the
study list, :mod:`.study` a study, :mod:`.viewer` the built-in viewer, :mod:`.ohif` the OHIF
viewer, :mod:`.upload` uploading, :mod:`.shares` share links, :mod:`.admin` administration,
:mod:`.about` what the user may do.
"""

from fastapi import FastAPI

from app.config import Settings
from app.web import about, admin, home, login, ohif, oidc, shares, study, upload, viewer
from app.web.assets import static_files
from app.web.errors import install_page_errors
from app.web.headers import PageHeaders

__all__ = ["add_page_headers", "install_web"]


def _api_prefixes(settings: Settings) -> tuple[str, ...]:
    root = settings.dicomweb_root
    return (root + "/", "/api/") if root else ("/api/",)


def add_page_headers(app: FastAPI, settings: Settings) -> None:
    """The pages' security headers (a middleware: add it inside the error boundary)."""
    app.add_middleware(PageHeaders, api_prefixes=_api_prefixes(settings))


def install_web(app: FastAPI, settings: Settings) -> None:
    """Add the pages, their static files and error pages to ``app`` (after the API's error
    handlers, which the page-aware ones wrap)."""
    install_page_errors(app, api_prefixes=_api_prefixes(settings))
    for module in (home, about, login, study, viewer, ohif, upload, shares, admin):
        app.include_router(module.router)
    auth = settings.auth
    if auth.enabled and auth.local_key and auth.oidc_issuer and auth.oidc_client_id:
        app.include_router(oidc.router)
    app.mount("/static", static_files(), name="static")

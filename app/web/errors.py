"""Errors on web pages as pages: a refused, missing or failed page is shown as HTML (the API keeps
its problem documents).

The handlers wrap the API's (:func:`app.api.errors.install_error_handlers`): a request on a page
route, or on no route at all from a browser asking for HTML outside the API's paths, gets
``error.html`` with the status; every other request goes to the API's handler unchanged.
Redirects (the guard's way to the sign-in page) pass as they are.
"""

from collections.abc import Awaitable, Callable
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.api.errors import log_lightbox_error
from app.api.security import is_page, is_shared
from app.errors import LightboxError
from app.web.templating import render

__all__ = ["install_page_errors"]

Handler = Callable[[Request, Exception], Awaitable[Response]]

_TITLES = {
    400: "The request could not be understood",
    401: "Sign-in required",
    403: "Not permitted",
    404: "Not found",
    405: "Not allowed",
    410: "Deleted",
    413: "Too large",
    429: "Too many attempts",
}


def _wants_page(request: Request, api_prefixes: tuple[str, ...]) -> bool:
    route = request.scope.get("route")
    if route is not None:
        return is_page(route)
    accept = request.headers.get("accept", "")
    return "text/html" in accept and not request.url.path.startswith(api_prefixes)


def _page(request: Request, status: int, message: str) -> Response:
    title = _TITLES.get(status, "Something went wrong" if status >= 500 else "Refused")
    if status == 401 and is_shared(request.scope.get("route")):
        title = "This link cannot be opened"
    return render(
        request,
        "error.html",
        {"status": status, "title": title, "message": message},
        status_code=status,
    )


def install_page_errors(app: FastAPI, *, api_prefixes: tuple[str, ...]) -> None:
    """Put the page-aware handlers in front of the API's (call after installing those)."""
    prefixes = tuple(p for p in api_prefixes if p)
    http_handler = cast("Handler", app.exception_handlers[StarletteHTTPException])
    lightbox_handler = cast("Handler", app.exception_handlers[LightboxError])
    validation_handler = cast("Handler", app.exception_handlers[RequestValidationError])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if 300 <= exc.status_code < 400 or not _wants_page(request, prefixes):
            return await http_handler(request, exc)
        response = _page(request, exc.status_code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            if name.lower() != "www-authenticate":
                response.headers.append(name, value)
        return response

    @app.exception_handler(LightboxError)
    async def _lightbox(request: Request, exc: LightboxError) -> Response:
        if not _wants_page(request, prefixes):
            return await lightbox_handler(request, exc)
        log_lightbox_error(request.scope, exc)
        return _page(request, exc.http_status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if not _wants_page(request, prefixes):
            return await validation_handler(request, exc)
        return _page(request, 400, "A value in the request is not valid.")

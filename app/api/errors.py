"""Error responses (PS3.18 §8.6.3, GEN-05): a short problem report, never a dataset, never PHI.

What is logged follows who is at fault. A refusal (a :class:`~app.errors.LightboxError` with a
4xx status: the request was wrong, and the answer says why) is one INFO line without a
traceback: the client made the mistake, the code did what it should. A server-side failure (a
5xx :class:`~app.errors.LightboxError`, or any exception nothing mapped) is logged once, at
ERROR, with its traceback. :class:`ErrorBoundary` answers the unexpected ones itself instead of
leaving them to Starlette's ``ServerErrorMiddleware``, which re-raises every exception after its
handler ran, so that the server would log the same traceback a second time.

A log line names the route's template, never the path (its UIDs) nor the query (search
parameters may hold patient data); the request id in the record leads to the audit row. Each
error is also counted by its kind (``lightbox_http_failures_total``).
"""

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.observe import route_labels
from app.errors import LightboxError
from app.services.metrics import record_failure

__all__ = ["PROBLEM_JSON", "ErrorBoundary", "install_error_handlers", "problem"]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """An RFC 9457 problem document."""
    body = orjson.dumps({"status": status, "detail": detail})
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def log_lightbox_error(scope: Scope, exc: LightboxError) -> None:
    """A refusal in one line (INFO); a server-side LightboxError with its traceback (ERROR).

    The route's template is logged, never the path's values or the query string: search
    parameters may hold patient data.
    """
    service, route = route_labels(scope)
    record_failure(service, type(exc).__name__)
    method = scope["method"]
    if exc.http_status >= 500:
        log.error(
            "%s %s failed (%d): %s", method, route, exc.http_status, exc.message, exc_info=exc
        )
    else:
        log.info("%s %s refused (%d): %s", method, route, exc.http_status, exc.message)


def install_error_handlers(app: FastAPI) -> None:
    """Translate LightboxError, validation and framework errors into problem responses, and
    put the :class:`ErrorBoundary` around everything (call this after adding the other
    middleware: the last one added is the outermost)."""

    @app.exception_handler(LightboxError)
    async def _lightbox(request: Request, exc: LightboxError) -> Response:
        log_lightbox_error(request.scope, exc)
        return problem(exc.http_status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem(400, f"invalid request parameter {where}: {first.get('msg', '')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        return problem(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    app.add_middleware(ErrorBoundary)


class ErrorBoundary:
    """The last resort: an exception no handler took becomes a 500 problem, logged once.

    Outside every other middleware (the audit middleware records the 500 it saw pass), inside
    Starlette's ``ServerErrorMiddleware``, which then never sees the exception. A
    :class:`~app.errors.LightboxError` raised outside the routes (by a middleware) is answered
    with its own status. Once the response has started its status cannot change: the
    exception is re-raised so that the server cuts the connection (and logs it, once).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_started(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_started)
        except Exception as exc:
            if started:
                raise
            if isinstance(exc, LightboxError):
                log_lightbox_error(scope, exc)
                response = problem(exc.http_status, exc.message)
            else:
                service, route = route_labels(scope)
                record_failure(service, "unhandled")
                log.error("unhandled error in %s %s", scope["method"], route, exc_info=exc)
                response = problem(500, "internal error")
            await response(scope, receive, send)

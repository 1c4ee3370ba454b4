"""Each request measured and logged once (issue 23, points 4, 5 and 10): its id, the metrics'
request histogram, and the access log's line.

:class:`ObserveMiddleware` runs outside every other middleware but the connection deadlines, so
it sees the status the client got, 500s of the error boundary included. It gives the request
its id (the client's ``X-Request-ID`` when that is a plain name, else a new one; the audit
middleware sends it back and records it) and binds it to the request's context, so every record
the request causes carries it (:mod:`app.logs`).

When the request is over it counts it (``lightbox_http_request_duration_seconds``, by the
route's tag, method, route template and status) and writes one line to the ``lightbox.access``
logger: method, route template, status, duration, request id, and the actor (the token's
subject). Never the path's values nor the query string: the UIDs name studies, a QIDO-RS query
holds patient names, and a token may ride in a WADO-URI URL. This line replaces the servers'
own access logs (uvicorn's and gunicorn's are off), which printed the whole request line.
"""

import logging
import time
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.security.audit_events import REQUEST_ID_STATE
from app.api.security.request_ids import request_id as request_id_of
from app.logs import bind_request_id, reset_request_id
from app.services.metrics import UNMATCHED, RequestMetrics

__all__ = ["ACCESS_LOGGER", "ObserveMiddleware", "route_labels"]

#: the access log's logger: one INFO line per request
ACCESS_LOGGER: Final = "lightbox.access"
access_log = logging.getLogger(ACCESS_LOGGER)
#: the status of a request that ended without a response (the client went away first, or the
#: app failed before answering and nothing else did)
_NO_RESPONSE: Final = 499


def _matched(scope: Scope) -> Any:
    """What the router matched: FastAPI's context of the route as included (its path with the
    router's prefix, its tags with the router's), else the route itself (None: nothing)."""
    context = scope.get("fastapi", {}).get("effective_route_context")
    if context is not None and getattr(context, "original_route", None) is scope.get("route"):
        return context
    return scope.get("route")


def route_labels(scope: Scope) -> tuple[str, str]:
    """The matched route's service (its first tag) and template (with the router's prefix);
    ``("other", "<unmatched>")`` when no route matched."""
    route = _matched(scope)
    if route is None:
        return "other", UNMATCHED
    tags = getattr(route, "tags", None)
    service = str(tags[0]) if tags else "other"
    return service, str(getattr(route, "path", UNMATCHED))


class ObserveMiddleware:
    """Request id, metrics and the access log line of every HTTP request."""

    def __init__(self, app: ASGIApp, *, metrics: bool = True, access_log: bool = True) -> None:
        self.app = app
        self.metrics = RequestMetrics() if metrics else None
        self.access_log = access_log
        #: id(route) -> (route, (service, template)): routes (and FastAPI's contexts of the
        #: routes as included) are few and live as long as the app; a route compares by value,
        #: so it cannot be a key itself
        self._labels: dict[int, tuple[Any, tuple[str, str]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope)
        scope.setdefault("state", {})[REQUEST_ID_STATE] = request_id
        token = bind_request_id(request_id)
        status = _NO_RESPONSE

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            try:
                # inside the request's context: the record takes its id from it (app.logs)
                self._done(scope, status, time.perf_counter() - started)
            finally:
                reset_request_id(token)

    def _done(self, scope: Scope, status: int, seconds: float) -> None:
        route = _matched(scope)
        known = self._labels.get(id(route))
        if known is not None and known[0] is route:
            service, template = known[1]
        else:
            service, template = route_labels(scope)
            self._labels[id(route)] = (route, (service, template))
        method: str = scope["method"]
        if self.metrics is not None:
            self.metrics.observe(service, method, template, status, seconds)
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            principal = scope["state"].get("principal")
            duration_ms = round(seconds * 1000, 2)
            # made and handled directly: Logger.info would also look up the caller's frame,
            # which no line of ours shows (a few microseconds per request)
            record = access_log.makeRecord(
                ACCESS_LOGGER,
                logging.INFO,
                __file__,
                0,
                "%s %s %d %.2f ms",
                (method, template, status, duration_ms),
                None,
                extra={
                    "method": method,
                    "route": template,
                    "status": status,
                    "duration_ms": duration_ms,
                    "actor": getattr(principal, "subject", None),
                },
            )
            access_log.handle(record)

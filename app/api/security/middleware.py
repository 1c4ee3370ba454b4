"""The audit middleware: one audit record per routed request (GEN-10), after the response:
actor, source address, action, outcome and status, the UIDs in the path, the count and the
request id, for refused and failed requests too (health checks excepted). It also sends the
request id and, on retrieves, Cross-Origin-Resource-Policy.

A write request's service commits the rows of its transactions with them (:func:`write_audit`);
the request's own row, when it is written, stands for them (``app.services.audit``).
"""

import functools
import logging
import time
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.security.access import ANONYMOUS_ROUTE, audited, declared
from app.api.security.audit_events import REQUEST_ID_STATE, WRITE_STATE, request_event
from app.api.security.request_ids import request_id as request_id_of
from app.auth.principal import Principal
from app.config import Settings
from app.services.audit import AuditLog, WriteAudit

__all__ = ["AuditMiddleware", "client_source", "note", "write_audit"]

log = logging.getLogger(__name__)


def write_audit(request: Request, audit: AuditLog) -> WriteAudit | None:
    """The audit side of a write request (STOW, DELETE), for the service to commit the rows of
    its transactions with them; the request's own row, when it is written, stands for them
    (``app.services.audit``). None when the audit trail is off."""
    settings: Settings = request.app.state.settings
    state = request.scope.get("state")
    if not settings.auth.audit_enabled or state is None:
        return None
    principal: Principal | None = state.get("principal")
    write = audit.for_write(
        actor=principal.subject if principal is not None else None,
        client_id=principal.client_id if principal is not None else None,
        source=client_source(request.scope, frozenset(settings.trusted_proxies)),
        request_id=state.get(REQUEST_ID_STATE),
    )
    state[WRITE_STATE] = write
    return write


def note(request: Request, **fields: Any) -> None:
    """Add to this request's audit record (``count``, ``patient_id``, ``study_uid``, ``detail``,
    and ``action`` when the route's method and path do not say it)."""
    extra: dict[str, Any] | None = getattr(request.state, "audit_extra", None)
    if extra is None:
        extra = request.state.audit_extra = {}
    extra.update(fields)


class AuditMiddleware:
    """Request id, Cross-Origin-Resource-Policy, and one audit record per routed request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        root: str,
        resource_policy: str | None,
        trusted_proxies: frozenset[str] = frozenset(),
        audit: bool = True,
    ) -> None:
        self.app = app
        self.audit = audit
        self.trusted_proxies = trusted_proxies
        self.root = root + "/" if root else "/"
        self.resource_policy = resource_policy.encode() if resource_policy else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        # given by the observing middleware outside (app.api.observe), which logs with it
        request_id = state.get(REQUEST_ID_STATE) or request_id_of(scope)
        # for the rows a write commits with itself (:func:`write_audit`)
        state[REQUEST_ID_STATE] = request_id
        status = 500
        total: int | None = None
        retrieved = scope["method"] in ("GET", "HEAD") and scope["path"].startswith(self.root)

        audit = self.audit
        added = [(b"x-request-id", request_id.encode("latin-1"))]
        if retrieved and self.resource_policy is not None:
            added.append((b"cross-origin-resource-policy", self.resource_policy))

        async def send_wrapper(message: Message) -> None:
            nonlocal status, total
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", ())
                if audit:  # the count is only read for the audit record
                    for name, value in headers:
                        if name.lower() == b"x-total-count" and value.isdigit():
                            total = int(value)
                message = {**message, "headers": [*headers, *added]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            await self._record(scope, status, total, request_id)

    async def _record(self, scope: Scope, status: int, total: int | None, request_id: str) -> None:
        """Queue the request's audit event; the audit writer builds it (:func:`request_event`)
        with the rest of its batch, off the request path.

        Only what the event is made of is kept (a few strings, the request's small ``state`` and
        ``path_params`` dicts), never the scope: a queued event must not hold a finished
        request's objects (the app's dependency stacks, headers, route objects) alive until its
        batch, up to ``queue_size`` of them when the database is slow.
        """
        if not self.audit:
            return
        route = scope.get("route")
        if route is None or declared(route) == ANONYMOUS_ROUTE:
            return
        if status < 400 and not audited(route):  # a page that shows nothing to account for
            return
        services = getattr(scope["app"].state, "services", None)
        if services is None:
            return
        build = functools.partial(
            request_event,
            scope["method"],
            str(getattr(route, "path", scope["path"])),
            scope.get("state"),
            scope.get("path_params"),
            scope.get("query_string", b""),
            self._source(scope),
            status,
            total,
            request_id,
            time.time(),
        )
        try:
            await services.audit.record_later(build)
        except Exception:  # the log is closing: say so loudly, never silently
            # the route's template: the path's UIDs are what the audit row would have held
            log.exception(
                "audit event not recorded: %s %s, status %s, request %s",
                scope["method"],
                getattr(route, "path", "<unmatched>"),
                status,
                request_id,
            )

    def _source(self, scope: Scope) -> str | None:
        return client_source(scope, self.trusted_proxies)


def client_source(scope: Scope, trusted_proxies: frozenset[str]) -> str | None:
    """The client address; behind a trusted proxy, the last untrusted X-Forwarded-For hop."""
    client = scope.get("client")
    address: str | None = client[0] if client else None
    if address is None or address not in trusted_proxies:
        return address
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            header: str = value.decode("latin-1")
            hops = [h.strip() for h in header.split(",") if h.strip()]
            for hop in reversed(hops):
                if hop not in trusted_proxies:
                    return hop[:64]
    return address

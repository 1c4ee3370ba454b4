"""Access control on every route, CORS, and one audit record per request (GEN-06/09/10).

:func:`authorize` is an application-wide dependency (``FastAPI(dependencies=...)``), so every
route of every router gets it, including routes added later. The permission a route needs is its
own declaration (``openapi_extra=requires(...)``) when present, else derived from the HTTP method:
GET/HEAD/OPTIONS read, POST write, DELETE delete. Only routes declared ``anonymous`` (the health
checks) are open; with ``auth.anonymous_read`` callers without a token may also read.

A scoped grant (a token restricted to some studies or patients) is checked here for every route
that names a study, in its path (``{study}``) or in a WADO-URI ``studyUID`` query parameter;
searches apply it themselves through :data:`~app.api.deps.RestrictionDep`.

:class:`AuditMiddleware` records one event per request on a route (health checks excepted) after
the response: actor, source address, action, outcome and status, the UIDs in the path, the count
and the request id, for refused and failed requests too. A HEAD (:mod:`app.api.head`) is
recorded with the action ``head``: it sends no data, so it is no "Instances Accessed" read.

The modules: :mod:`.access` the access checks, :mod:`.middleware` the audit middleware,
:mod:`.audit_events` a finished request as its audit event, :mod:`.request_ids` request ids,
:mod:`.install` the middleware stack and the bearer scheme in the OpenAPI document,
:mod:`.sessions` the browser's session cookie and its CSRF check, :mod:`.share_cookies` the
cookie of a share link's visitor.
"""

from app.api.security.access import (
    ANONYMOUS_ROUTE,
    AUTHENTICATED_ROUTE,
    LOGIN_PATH,
    authorize,
    build_verifier,
    is_page,
    is_shared,
    page,
    permission_for,
    requires,
    verify_token,
)
from app.api.security.audit_events import action_for
from app.api.security.install import install_security
from app.api.security.middleware import AuditMiddleware, note, write_audit

__all__ = [
    "ANONYMOUS_ROUTE",
    "AUTHENTICATED_ROUTE",
    "LOGIN_PATH",
    "AuditMiddleware",
    "action_for",
    "authorize",
    "build_verifier",
    "install_security",
    "is_page",
    "is_shared",
    "note",
    "page",
    "permission_for",
    "requires",
    "verify_token",
    "write_audit",
]

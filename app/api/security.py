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
"""

import functools
import itertools
import logging
import os
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.deps import restriction_of
from app.auth.keys import LocalSigningKey, OidcKeys
from app.auth.principal import ANONYMOUS, SYSTEM, ClaimMapping, Permission, Principal
from app.auth.verify import InvalidToken, TokenVerifier
from app.config import AuthSettings, Settings
from app.services.audit import AuditLog, AuditRecord, Outcome, WriteAudit

__all__ = [
    "ANONYMOUS_ROUTE",
    "AuditMiddleware",
    "action_for",
    "authorize",
    "build_verifier",
    "install_security",
    "note",
    "permission_for",
    "requires",
    "write_audit",
]

log = logging.getLogger(__name__)

PERMISSION_KEY: Final = "x-lightbox-permission"
ANONYMOUS_ROUTE: Final = "anonymous"
_METHOD_PERMISSION: Final = {
    "GET": Permission.READ,
    "HEAD": Permission.READ,
    "OPTIONS": Permission.READ,
    "POST": Permission.WRITE,
    "PUT": Permission.WRITE,
    "PATCH": Permission.WRITE,
    "DELETE": Permission.DELETE,
}
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_REALM: Final = 'Bearer realm="lightbox"'
EXPOSED_HEADERS: Final = [
    "Warning",
    "Content-Location",
    "Content-Type",
    "Location",
    "X-Total-Count",
    "X-Request-ID",
]


def requires(permission: Permission | str) -> dict[str, Any]:
    """A route's explicit declaration: ``@router.get(..., openapi_extra=requires("admin"))``."""
    return {PERMISSION_KEY: str(permission)}


def _declared(route: BaseRoute | None) -> str | None:
    extra = getattr(route, "openapi_extra", None)
    value = extra.get(PERMISSION_KEY) if isinstance(extra, dict) else None
    return value if isinstance(value, str) else None


def permission_for(route: BaseRoute | None, method: str) -> Permission | None:
    """What a request needs: the route's declaration, else by method; ``None`` is anonymous.

    An undeclared method needs admin (fail closed).
    """
    declared = _declared(route)
    if declared == ANONYMOUS_ROUTE:
        return None
    if declared is not None:
        return Permission(declared)
    return _METHOD_PERMISSION.get(method.upper(), Permission.ADMIN)


def build_mapping(auth: AuthSettings) -> ClaimMapping:
    values: dict[str, Permission] = {}
    for permission, names in (
        (Permission.READ, auth.read_values),
        (Permission.WRITE, auth.write_values),
        (Permission.DELETE, auth.delete_values),
        (Permission.ADMIN, auth.admin_values),
    ):
        values.update(dict.fromkeys(names, permission))
    return ClaimMapping(
        permission_claims=tuple(auth.permission_claims),
        values=values,
        study_claim=auth.study_claim,
        patient_claim=auth.patient_claim,
    )


def build_verifier(settings: Settings) -> TokenVerifier:
    """The verifier the settings describe (creates the embedded key on first use)."""
    auth = settings.auth
    local = LocalSigningKey.load_or_create(settings.data_dir)[0] if auth.local_key else None
    oidc = (
        OidcKeys(
            auth.oidc_issuer,
            jwks_uri=auth.oidc_jwks_uri,
            allow_http=auth.oidc_allow_http,
            cache_seconds=auth.jwks_cache_seconds,
            min_refresh_seconds=auth.jwks_min_refresh_seconds,
        )
        if auth.oidc_issuer
        else None
    )
    return TokenVerifier(
        audience=auth.audience,
        mapping=build_mapping(auth),
        local_key=local,
        local_issuer=auth.local_issuer,
        oidc=oidc,
        oidc_audience=auth.oidc_audience,
        oidc_algorithms=auth.oidc_algorithms,
        leeway_seconds=auth.leeway_seconds,
        max_token_bytes=auth.max_token_bytes,
    )


def _verifier(request: Request) -> TokenVerifier:
    state = request.app.state
    verifier: TokenVerifier | None = getattr(state, "verifier", None)
    if verifier is None:
        verifier = state.verifier = build_verifier(state.settings)
    return verifier


def _deny(request: Request, status: int, detail: str, *, challenge: str) -> HTTPException:
    request.state.audit_denied = detail
    settings: Settings = request.app.state.settings
    if status == 403 and settings.auth.deny_as_not_found:
        return HTTPException(404, "not found")
    return HTTPException(status, detail, headers={"WWW-Authenticate": challenge})


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("the Authorization header is not a bearer token")
    return token.strip()


async def authorize(request: Request) -> None:
    """The application-wide guard: authenticate, check the permission and the scoped grant."""
    needed = permission_for(request.scope.get("route"), request.method)
    if needed is None:
        return
    settings: Settings = request.app.state.settings
    if not settings.auth.enabled:
        request.state.principal = SYSTEM
        return
    try:
        token = _bearer(request)
        if token is None:
            if settings.auth.anonymous_read and needed is Permission.READ:
                principal = ANONYMOUS
            else:
                request.state.audit_denied = "no bearer token"
                raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": _REALM})
        else:
            principal = await _verifier(request).verify(token)
    except InvalidToken as exc:
        request.state.audit_denied = str(exc)
        challenge = f'{_REALM}, error="invalid_token", error_description="{exc}"'
        raise HTTPException(401, str(exc), {"WWW-Authenticate": challenge}) from None
    request.state.principal = principal
    if not principal.allows(needed):
        raise _deny(
            request,
            403,
            f"the token does not grant {needed.value}",
            challenge=f'{_REALM}, error="insufficient_scope", scope="{needed.value}"',
        )
    if principal.restricted:
        await _check_grant(request, principal, needed)


def _applies_restriction(route: BaseRoute | None) -> bool:
    """Whether the route's handler takes :data:`~app.api.deps.RestrictionDep` (filters itself)."""
    stack = [getattr(route, "dependant", None)]
    while stack:
        dependant = stack.pop()
        if dependant is None:
            continue
        if dependant.call is restriction_of:
            return True
        stack.extend(dependant.dependencies)
    return False


async def _check_grant(request: Request, principal: Principal, needed: Permission) -> None:
    studies = set(request.query_params.getlist("studyUID"))
    if "study" in request.path_params:
        studies.add(str(request.path_params["study"]))
    challenge = f'{_REALM}, error="insufficient_scope"'
    if not studies:
        # no study named: only a search that filters by the grant itself may serve a scoped
        # token (fail closed for any route that does not)
        if needed is not Permission.READ or not _applies_restriction(request.scope.get("route")):
            raise _deny(
                request,
                403,
                "a scoped token may only act on the studies it names",
                challenge=challenge,
            )
        return
    restriction = principal.restriction()
    assert restriction is not None
    for study in sorted(studies):
        patient_id = None
        if restriction.patient_ids is not None:
            patient_id = await request.app.state.services.access.patient_id(study)
        if not restriction.allows(study, patient_id):
            raise _deny(request, 403, "the token does not grant this study", challenge=challenge)


#: ``scope["state"]`` keys: the request's id (set by :class:`AuditMiddleware`), and its
#: :class:`~app.services.audit.WriteAudit` (set by :func:`write_audit`)
_REQUEST_ID_STATE: Final = "audit_request_id"
_WRITE_STATE: Final = "audit_write"


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
        source=_client_source(request.scope, frozenset(settings.trusted_proxies)),
        request_id=state.get(_REQUEST_ID_STATE),
    )
    state[_WRITE_STATE] = write
    return write


def note(request: Request, **fields: Any) -> None:
    """Add to this request's audit record (``count``, ``patient_id``, ``study_uid``, ``detail``)."""
    extra: dict[str, Any] | None = getattr(request.state, "audit_extra", None)
    if extra is None:
        extra = request.state.audit_extra = {}
    extra.update(fields)


@functools.lru_cache(maxsize=1024)
def action_for(method: str, path: str) -> str:
    """The audited action of a route, from its method and path template (a bounded set: the
    routes', so the answers are kept).

    >>> action_for("GET", "/dicom-web/studies/{study}/series/{series}/metadata")
    'metadata'
    >>> action_for("GET", "/dicom-web/studies/{study}/frames/{frames}/rendered")
    'render'
    >>> action_for("GET", "/dicom-web/studies/{study}/series")
    'search'
    >>> action_for("HEAD", "/dicom-web/studies/{study}")
    'head'
    """
    method = method.upper()
    if path.startswith("/api/audit"):
        return "audit-query"
    if method == "HEAD":
        # headers only: what exists, its type, size and ETag (a search's count), no data read
        return "head"
    if method in ("POST", "PUT", "PATCH"):
        return "store"
    if method == "DELETE":
        return "delete"
    if method == "OPTIONS":
        return "capabilities"
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if last in ("rendered", "thumbnail"):
        return "render"
    if "/frames/" in path:
        return "frames"
    if last == "metadata":
        return "metadata"
    if "/bulkdata" in path:
        return "bulkdata"
    if last in ("studies", "series", "instances"):
        return "search"
    return "retrieve"


def _outcome(status: int, denied: bool) -> str:
    if denied or status in (401, 403):
        return Outcome.DENIED
    return Outcome.SUCCESS if status < 400 else Outcome.FAILURE


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
        request_id = _request_id(scope)
        if self.audit:  # for the rows a write commits with itself (:func:`write_audit`)
            scope.setdefault("state", {})[_REQUEST_ID_STATE] = request_id
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
        """Queue the request's audit event; the audit writer builds it (:func:`_event`) with the
        rest of its batch, off the request path.

        Only what the event is made of is kept (a few strings, the request's small ``state`` and
        ``path_params`` dicts), never the scope: a queued event must not hold a finished
        request's objects (the app's dependency stacks, headers, route objects) alive until its
        batch, up to ``queue_size`` of them when the database is slow.
        """
        if not self.audit:
            return
        route = scope.get("route")
        if route is None or _declared(route) == ANONYMOUS_ROUTE:
            return
        services = getattr(scope["app"].state, "services", None)
        if services is None:
            return
        build = functools.partial(
            _event,
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
            log.exception(
                "audit event not recorded: %s %s, status %s, request %s",
                scope["method"],
                scope["path"],
                status,
                request_id,
            )

    def _source(self, scope: Scope) -> str | None:
        return _client_source(scope, self.trusted_proxies)


def _client_source(scope: Scope, trusted_proxies: frozenset[str]) -> str | None:
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


def _event(
    method: str,
    path: str,
    state: dict[str, Any] | None,
    params: dict[str, Any] | None,
    query_string: bytes,
    source: str | None,
    status: int,
    total: int | None,
    request_id: str,
    ended: float,
) -> AuditRecord:
    """The audit event of a finished request, from what :meth:`AuditMiddleware._record` kept
    (``path`` is the route's template)."""
    state = state or {}
    write: WriteAudit | None = state.get(_WRITE_STATE)
    # first: should the rest fail, the journal rows are left for a sweep to chain on their own
    supersedes = write.release() if write is not None else ()
    principal: Principal | None = state.get("principal")
    denied: str | None = state.get("audit_denied")
    extra: dict[str, Any] = state.get("audit_extra") or {}
    params = params or {}
    raw = query_string.decode("latin-1")
    query = _query(raw) if "UID=" in raw else {}
    action = action_for(method, path)
    if status == 401:
        action = "login-failure"
    study = extra.get("study_uid") or params.get("study") or query.get("studyUID")
    patient = extra.get("patient_id")
    detail = extra.get("detail") or denied or f"{method} {path}"
    if action == "search" or (action == "head" and action_for("GET", path) == "search"):
        # a HEAD on a search answers with the number of matches: who asked for whom is kept
        study, patient, detail = _searched(raw, query, study, patient, detail, denied is None)
    return AuditRecord(
        action=action,
        outcome=_outcome(status, denied is not None),
        status=status,
        actor=principal.subject if principal is not None else None,
        client_id=principal.client_id if principal is not None else None,
        source=source,
        study_uid=_uid(study),
        series_uid=_uid(params.get("series") or query.get("seriesUID")),
        instance_uid=_uid(params.get("instance") or query.get("objectUID")),
        patient_id=patient,
        count=extra.get("count", total),
        request_id=request_id,
        detail=detail,
        time=datetime.fromtimestamp(ended, UTC),
        supersedes=supersedes,
    )


#: the longest query string a search's audit detail keeps
MAX_AUDITED_QUERY: Final = 1024
#: QIDO keys naming one patient or one study, by keyword or tag
_PATIENT_KEYS: Final = ("PatientID", "00100020")
_STUDY_KEYS: Final = ("StudyInstanceUID", "0020000D")


def _searched(
    raw: str, query: dict[str, str], study: Any, patient: Any, detail: str, allowed: bool
) -> tuple[Any, Any, str]:
    """What a search looked for, as the audit records it (PS3.15 A.5.3.10 keeps the query).

    The query string joins the detail (bounded; percent-encoded as sent), and a search for one
    PatientID or one StudyInstanceUID names it, so "who looked for this patient?" finds searches
    too (a wildcard or a list names nobody). A refused search keeps its refusal as the detail.
    """
    if not raw:
        return study, patient, detail
    if allowed:
        detail = f"{detail}?{raw[:MAX_AUDITED_QUERY]}"
    fields = query or _query(raw)  # parsed already when it names a UID (:func:`_event`)
    if patient is None:
        wanted = fields.get(_PATIENT_KEYS[0]) or fields.get(_PATIENT_KEYS[1])
        if wanted and _WILDCARD.search(wanted) is None:
            patient = wanted[:64]
    if study is None:
        wanted = fields.get(_STUDY_KEYS[0]) or fields.get(_STUDY_KEYS[1])
        if wanted and _LIST_OR_WILDCARD.search(wanted) is None:
            study = wanted
    return study, patient, detail


#: a value matching more than one thing: a wildcard (or an escape), or a list of UIDs
_WILDCARD: Final = re.compile(r"[*?\\]")
_LIST_OR_WILDCARD: Final = re.compile(r"[,*?\\]")


def _query(raw: str) -> dict[str, str]:
    """``dict(parse_qsl(raw))``, without its decoding work when there is nothing to decode.

    >>> _query("PatientID=P1&limit=&x&StudyInstanceUID=1.2") == dict(parse_qsl(
    ...     "PatientID=P1&limit=&x&StudyInstanceUID=1.2"))
    True
    >>> _query("PatientName=A%5EB+C")
    {'PatientName': 'A^B C'}
    """
    if "%" in raw or "+" in raw:
        return dict(parse_qsl(raw))
    out = {}
    for pair in raw.split("&"):
        name, equals, value = pair.partition("=")
        if equals and value:  # as parse_qsl: no "=", or a blank value, is left out
            out[name] = value
    return out


def _uid(value: Any) -> str | None:
    """A path or query value for a UID column, bounded to the column width."""
    if not isinstance(value, str) or not value:
        return None
    return value[:64]


class _RequestIds:
    """Request ids of this process: a random 64-bit prefix and a counter, unique across processes
    and restarts without asking the kernel for randomness per request (``uuid4`` did: a
    ``getrandom`` call per request). Correlation ids, not secrets: nothing is granted by one.
    A forked child (same prefix, same counter) is detected by its pid and takes a new prefix.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def next(self) -> str:
        if self._pid != os.getpid():
            self._pid, self._prefix = os.getpid(), secrets.token_hex(8)
            self._counter = itertools.count(1)
        return f"{self._prefix}-{next(self._counter):x}"


_new_request_id = _RequestIds().next


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
    return _new_request_id()


def _document_security(app: FastAPI) -> None:
    """Declare the bearer scheme in the OpenAPI document, on every operation but anonymous ones."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearer"] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and (
                    operation.get(PERMISSION_KEY) != ANONYMOUS_ROUTE
                ):
                    operation["security"] = [{"bearer": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_security(app: FastAPI, settings: Settings) -> None:
    """Audit middleware inside, CORS outermost (a preflight is answered before anything else)."""
    _document_security(app)
    app.add_middleware(
        AuditMiddleware,
        root=settings.dicomweb_root,
        resource_policy=settings.cors.resource_policy or None,
        trusted_proxies=frozenset(settings.trusted_proxies),
        audit=settings.auth.audit_enabled,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors.allow_origins,
        allow_methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Accept", "Content-Type", "X-Request-ID"],
        expose_headers=EXPOSED_HEADERS,
        max_age=settings.cors.max_age,
    )

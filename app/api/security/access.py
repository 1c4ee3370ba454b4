"""Access checks on every route (GEN-06/09): who the caller is (a bearer token, or anonymous
reading), whether the route's permission is granted, and a scoped grant's studies.

:func:`authorize` is an application-wide dependency (``FastAPI(dependencies=...)``), so every
route of every router gets it, including routes added later. The permission a route needs is its
own declaration (``openapi_extra=requires(...)``) when present, else derived from the HTTP method:
GET/HEAD/OPTIONS read, POST write, DELETE delete. Only routes declared ``anonymous`` (the health
checks) are open; with ``auth.anonymous_read`` callers without a token may also read.

A scoped grant (a token restricted to some studies or patients) is checked here for every route
that names a study, in its path (``{study}``) or in a WADO-URI ``studyUID`` query parameter;
searches apply it themselves through :data:`~app.api.deps.RestrictionDep`.
"""

from typing import Any, Final

from fastapi import HTTPException, Request
from starlette.routing import BaseRoute

from app.api.deps import restriction_of
from app.auth.factory import build_mapping, build_verifier
from app.auth.principal import ANONYMOUS, SYSTEM, Permission, Principal
from app.auth.verify import InvalidToken, TokenVerifier
from app.config import Settings

__all__ = [
    "ANONYMOUS_ROUTE",
    "PERMISSION_KEY",
    "authorize",
    "build_mapping",
    "build_verifier",
    "declared",
    "permission_for",
    "requires",
]

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
_REALM: Final = 'Bearer realm="lightbox"'


def requires(permission: Permission | str) -> dict[str, Any]:
    """A route's explicit declaration: ``@router.get(..., openapi_extra=requires("admin"))``."""
    return {PERMISSION_KEY: str(permission)}


def declared(route: BaseRoute | None) -> str | None:
    """The permission a route declares (:func:`requires`), if it does."""
    extra = getattr(route, "openapi_extra", None)
    value = extra.get(PERMISSION_KEY) if isinstance(extra, dict) else None
    return value if isinstance(value, str) else None


def permission_for(route: BaseRoute | None, method: str) -> Permission | None:
    """What a request needs: the route's declaration, else by method; ``None`` is anonymous.

    An undeclared method needs admin (fail closed).
    """
    permission = declared(route)
    if permission == ANONYMOUS_ROUTE:
        return None
    if permission is not None:
        return Permission(permission)
    return _METHOD_PERMISSION.get(method.upper(), Permission.ADMIN)


def _verifier(request: Request) -> TokenVerifier:
    state = request.app.state
    verifier: TokenVerifier | None = getattr(state, "verifier", None)
    if verifier is None:  # an app given open services (tests): built on first use
        verifier = state.verifier = build_verifier(
            state.settings, revocations=state.services.tokens.revocations
        )
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

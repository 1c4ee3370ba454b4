"""Access checks on every route (GEN-06/09): who the caller is (a bearer token, or anonymous
reading), whether the route's permission is granted, and a scoped grant's studies.

:func:`authorize` is an application-wide dependency (``FastAPI(dependencies=...)``), so every
route of every router gets it, including routes added later. The permission a route needs is its
own declaration (``openapi_extra=requires(...)``) when present, else derived from the HTTP method:
GET/HEAD/OPTIONS read, POST write, DELETE delete. Only routes declared ``anonymous`` (the health
checks, the sign-in page) are open; with ``auth.anonymous_read`` callers without a token may also
read.

The caller is the bearer token of the ``Authorization`` header or, without one, the browser's
session cookie (:mod:`.sessions`): the same verifier checks both. A request the cookie
authenticates must carry the session's CSRF token unless its method is safe, and its session is
renewed when due. Web pages (routes declared with :func:`page`) send a browser that is not signed
in to the sign-in page instead of answering 401, and take no anonymous readers.

A scoped grant (a token restricted to some studies or patients) is checked here for every route
that names a study, in its path (``{study}``) or in a WADO-URI ``studyUID`` query parameter;
searches apply it themselves through :data:`~app.api.deps.RestrictionDep`.
"""

from typing import Any, Final
from urllib.parse import quote

from fastapi import HTTPException, Request
from starlette.routing import BaseRoute

from app.api.deps import restriction_of
from app.api.security.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    RENEWAL_STATE,
    SAFE_METHODS,
    SESSION_STATE,
    is_secure,
    session_cookie,
    session_cookie_header,
)
from app.api.security.share_cookies import share_cookie
from app.auth.factory import build_mapping, build_verifier
from app.auth.principal import ANONYMOUS, SYSTEM, Permission, Principal
from app.auth.sessions import NotASession, SessionClaims
from app.auth.verify import InvalidToken, TokenVerifier
from app.config import Settings
from app.services.sessions import SessionEnded

__all__ = [
    "ANONYMOUS_ROUTE",
    "AUTHENTICATED_ROUTE",
    "LOGIN_PATH",
    "PAGE_KEY",
    "PERMISSION_KEY",
    "audited",
    "authorize",
    "build_mapping",
    "build_verifier",
    "declared",
    "is_page",
    "is_shared",
    "page",
    "permission_for",
    "requires",
    "verify_token",
]

PERMISSION_KEY: Final = "x-lightbox-permission"
#: routes marked as web pages (:func:`page`), and those not audited when they succeed
PAGE_KEY: Final = "x-lightbox-page"
AUDIT_KEY: Final = "x-lightbox-audit"
#: pages a share link's visitor may open with the share cookie (``page(..., shared=True)``)
SHARED_KEY: Final = "x-lightbox-shared"
ANONYMOUS_ROUTE: Final = "anonymous"
#: any signed-in caller, whatever its permissions (a page every user has, such as the home page)
AUTHENTICATED_ROUTE: Final = "authenticated"
LOGIN_PATH: Final = "/login"
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


def page(
    permission: Permission | str = AUTHENTICATED_ROUTE,
    *,
    audited: bool = False,
    shared: bool = False,
) -> dict[str, Any]:
    """A web page's declaration: what it needs (any signed-in user by default, or
    ``ANONYMOUS_ROUTE``), whether its successful requests are audited (a page that shows a
    study should be; a home page need not; refused requests are always audited), and whether a
    share link's visitor may open it with the share cookie (:mod:`.share_cookies`)."""
    declaration = {PERMISSION_KEY: str(permission), PAGE_KEY: True, AUDIT_KEY: audited}
    if shared:
        declaration[SHARED_KEY] = True
    return declaration


def _extra(route: BaseRoute | None) -> dict[str, Any]:
    extra = getattr(route, "openapi_extra", None)
    return extra if isinstance(extra, dict) else {}


def is_page(route: BaseRoute | None) -> bool:
    """Whether the route is a web page (HTML, the sign-in redirect)."""
    return _extra(route).get(PAGE_KEY) is True


def is_shared(route: BaseRoute | None) -> bool:
    """Whether the route is a page of a share link (the share cookie authenticates it)."""
    return _extra(route).get(SHARED_KEY) is True


def audited(route: BaseRoute | None) -> bool:
    """Whether the route's successful requests are audited (all but pages that say not)."""
    return _extra(route).get(AUDIT_KEY) is not False


def declared(route: BaseRoute | None) -> str | None:
    """The permission a route declares (:func:`requires`), if it does."""
    extra = getattr(route, "openapi_extra", None)
    value = extra.get(PERMISSION_KEY) if isinstance(extra, dict) else None
    return value if isinstance(value, str) else None


def permission_for(route: BaseRoute | None, method: str) -> Permission | None:
    """What a request needs: the route's declaration, else by method; ``None`` is anonymous
    (or, for ``AUTHENTICATED_ROUTE``, no permission in particular).

    An undeclared method needs admin (fail closed).
    """
    permission = declared(route)
    if permission in (ANONYMOUS_ROUTE, AUTHENTICATED_ROUTE):
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
    route = request.scope.get("route")
    declaration = declared(route)
    if declaration == ANONYMOUS_ROUTE:
        return
    needed = permission_for(route, request.method)
    settings: Settings = request.app.state.settings
    if not settings.auth.enabled:
        request.state.principal = SYSTEM
        return
    try:
        token = _bearer(request)
        if token is not None:
            principal = await _verifier(request).verify(token)
        else:
            cookie = session_cookie(request, settings)
            shared = share_cookie(request, settings) if _takes_share(route) else None
            if cookie is not None:
                principal = await _session(request, cookie)
            elif shared is not None:
                principal = await _share(request, shared)
            elif settings.auth.anonymous_read and needed is Permission.READ and not is_page(route):
                principal = ANONYMOUS
            else:
                request.state.audit_denied = "no bearer token"
                raise _unauthenticated(request, "a bearer token is required", _REALM)
    except InvalidToken as exc:
        request.state.audit_denied = str(exc)
        challenge = f'{_REALM}, error="invalid_token", error_description="{exc}"'
        raise _unauthenticated(request, str(exc), challenge) from None
    request.state.principal = principal
    claims: SessionClaims | None = getattr(request.state, SESSION_STATE, None)
    if claims is not None and request.method.upper() not in SAFE_METHODS:
        await _check_csrf(request, claims)
    if needed is not None and not principal.allows(needed):
        raise _deny(
            request,
            403,
            f"the token does not grant {needed.value}",
            challenge=f'{_REALM}, error="insufficient_scope", scope="{needed.value}"',
        )
    if principal.restricted:
        await _check_grant(request, principal, needed or Permission.READ)


async def _session(request: Request, token: str) -> Principal:
    """The caller of a session cookie (verified as any bearer token), its session kept in the
    request's state, and a renewed token for the response when one is due."""
    principal = await _verifier(request).verify(token)
    sessions = request.app.state.services.sessions
    try:
        claims = sessions.read(token, principal.permissions)
        renewed = await sessions.renew(claims)
    except (NotASession, SessionEnded) as exc:
        raise InvalidToken(str(exc)) from None
    if renewed is not None:
        max_age = renewed.claims.expires_at - renewed.claims.issued_at
        secure = is_secure(request, request.app.state.settings)
        header = session_cookie_header(renewed.token, max_age, secure=secure)
        setattr(request.state, RENEWAL_STATE, header)
        claims = renewed.claims
    setattr(request.state, SESSION_STATE, claims)
    return principal


async def verify_token(request: Request, token: str) -> Principal:
    """The caller a token names, verified as the guard verifies bearer tokens (signature,
    expiry, the deny list); :class:`InvalidToken` when it does not pass."""
    return await _verifier(request).verify(token)


def _takes_share(route: BaseRoute | None) -> bool:
    """Whether the share cookie may authenticate a request on ``route``: the API's routes (the
    cookie's paths are the shared study's DICOMweb resources) and the pages of a share."""
    return not is_page(route) or is_shared(route)


async def _share(request: Request, token: str) -> Principal:
    """The caller of a share cookie: a token restricted to studies, for reading only."""
    principal = await _verifier(request).verify(token)
    if not principal.restricted:
        raise InvalidToken("the share cookie does not hold a share link's token")
    if request.method.upper() not in SAFE_METHODS:
        request.state.audit_denied = "a share link only reads"
        raise HTTPException(403, "a share link only reads")
    request.state.share = True
    return principal


async def _check_csrf(request: Request, claims: SessionClaims) -> None:
    """A state-changing request made with the session cookie carries the session's CSRF token
    (a header, or a page's form field): a cross-site page can send the cookie, never the token."""
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and is_page(request.scope.get("route")):
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media in ("application/x-www-form-urlencoded", "multipart/form-data"):
            field = (await request.form()).get(CSRF_FIELD)
            presented = field if isinstance(field, str) else None
    if not request.app.state.services.sessions.csrf_valid(claims, presented):
        detail = "the CSRF token is missing or wrong"
        request.state.audit_denied = detail
        raise HTTPException(403, detail)


def _unauthenticated(request: Request, detail: str, challenge: str) -> HTTPException:
    """401 with the bearer challenge; on a web page, the way to the sign-in page instead (a
    redirect, or for htmx an ``HX-Redirect``), dropping a session cookie that did not pass."""
    route = request.scope.get("route")
    if not is_page(route):
        return HTTPException(401, detail, {"WWW-Authenticate": challenge})
    if is_shared(route):  # a share link's visitor has nothing to sign in to
        return HTTPException(401, f"This share link cannot be opened: {detail}.")
    # the path only: a query string may hold what was searched for (patient names)
    login = f"{LOGIN_PATH}?next={quote(request.url.path, safe='/')}"
    headers = {"Cache-Control": "no-store"}
    if session_cookie(request, request.app.state.settings) is not None:
        secure = is_secure(request, request.app.state.settings)
        headers["Set-Cookie"] = session_cookie_header("", 0, secure=secure)
    if request.headers.get("hx-request") == "true":
        return HTTPException(401, detail, {**headers, "HX-Redirect": login})
    return HTTPException(303, detail, {**headers, "Location": login})


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

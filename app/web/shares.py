"""Share links (issue 22, point 5): made on a study's page, listed and revoked by their maker
(``/shares``) and by administrators (``/admin/shares``), opened by anyone who has one.

Making one needs the write permission (a read-only account may not hand out access). The link
is ``/share/{study}#<token>`` and is shown once; the token is in the fragment, which browsers
never send, so no log and no ``Referer`` holds it. Opening it (``/share/{study}``, no account):
the page's script (``static/share.js``) strips the fragment from the address bar, posts the token
to ``/share/{study}/open``, which verifies it (signature, expiry, the deny list), checks that it
shares this study (403 otherwise), audits the opening and answers with the share cookie
(:mod:`app.api.security.share_cookies`); then the script opens ``/share/{study}/view``, the
built-in viewer, whose requests to the study's DICOMweb resources carry the cookie. Every one of
them is audited under the link's subject (``share:<maker>[ for <recipient>]``); an expired or
revoked link is refused (401) wherever it is used.
"""

import time
from typing import Annotated

import orjson
from fastapi import APIRouter, Form, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import CallerDep, RestrictionDep, ServicesDep, SettingsDep
from app.api.security import ANONYMOUS_ROUTE, note, page, verify_token, write_audit
from app.api.security.middleware import client_source
from app.api.security.share_cookies import share_cookie_headers, share_pages_path
from app.api.urls import service_base
from app.auth.principal import Permission
from app.auth.verify import InvalidToken
from app.config import Settings
from app.dicom.target import Target
from app.errors import BadRequest, UnsupportedMediaType
from app.web.navigation import local_path
from app.web.study import dicomweb_path, viewed_overview
from app.web.templating import render
from app.web.viewer import viewer_page

router = APIRouter(include_in_schema=False)

#: the longest share token accepted in an opening (the verifier's own bound applies as well)
MAX_TOKEN = 8192


def site_base(request: Request, settings: Settings) -> str:
    """The site's absolute URL as its users reach it (the DICOMweb root's, without the root)."""
    base = service_base(request, settings)
    root = settings.dicomweb_root
    return base[: -len(root)] if root and base.endswith(root) else base


def _source(request: Request, settings: Settings) -> str | None:
    return client_source(request.scope, frozenset(settings.trusted_proxies))


@router.post(
    "/studies/{study}/shares",
    response_class=HTMLResponse,
    openapi_extra=page(Permission.WRITE, audited=True),
)
async def make_share(
    request: Request,
    study: str,
    services: ServicesDep,
    settings: SettingsDep,
    caller: CallerDep,
    expires: Annotated[str, Form()] = "7",
    label: Annotated[str, Form()] = "",
) -> Response:
    """A share link for the study, shown once (a fragment for htmx, else a page)."""
    target = Target.from_path(study)
    if not expires.isdigit() or len(expires) > 3:
        raise BadRequest("the validity is a number of days")
    made = await services.shares.create(
        target.study_uid,
        maker=caller,
        days=int(expires),
        label=label,
        audit=write_audit(request, services.audit),
    )
    note(
        request,
        action="share-create",
        patient_id=made.study.patient_id or None,
        detail=f"jti={made.link.jti} expires={made.link.expires_at.isoformat()}",
    )
    url = f"{site_base(request, settings)}{share_pages_path(target.study_uid)}#{made.token}"
    context = {"made": made, "url": url}
    if request.headers.get("hx-request") == "true":
        return render(request, "shares/_made.html", context)
    return render(request, "shares/made.html", context)


@router.get("/shares", response_class=HTMLResponse, openapi_extra=page(Permission.WRITE))
async def my_shares(request: Request, services: ServicesDep, caller: CallerDep) -> Response:
    """The signed-in user's share links, newest first."""
    links = await services.shares.list(maker=caller.subject)
    return render(request, "shares/list.html", {"links": links, "everyone": False})


@router.post(
    "/shares/{jti}/revoke",
    response_class=HTMLResponse,
    openapi_extra=page(Permission.WRITE, audited=True),
)
async def revoke_share(
    request: Request,
    jti: str,
    services: ServicesDep,
    caller: CallerDep,
    next: Annotated[str, Form()] = "/shares",
) -> Response:
    """Revoke a share link (its maker, or an administrator), then back to the list."""
    link = await services.shares.revoke(jti, by=caller, audit=write_audit(request, services.audit))
    note(request, action="share-revoke", study_uid=link.study_uid, detail=f"jti={jti}")
    return RedirectResponse(local_path(next), status_code=303)


@router.get("/share/{study}", response_class=HTMLResponse, openapi_extra=page(ANONYMOUS_ROUTE))
async def share_landing(request: Request, study: str) -> Response:
    """What a share link opens first: the page whose script takes the token from the
    fragment (module docstring)."""
    target = Target.from_path(study)
    base = share_pages_path(target.study_uid)
    return render(
        request, "shares/landing.html", {"open_url": f"{base}/open", "view_url": f"{base}/view"}
    )


@router.post("/share/{study}/open", openapi_extra=page(ANONYMOUS_ROUTE))
async def open_share(
    request: Request,
    study: str,
    services: ServicesDep,
    settings: SettingsDep,
) -> Response:
    """Check a share link's token for this study and give the browser the share cookie."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise UnsupportedMediaType("the token is sent as JSON")  # never a cross-site form
    target = Target.from_path(study)
    raw = await request.body()
    try:
        body = orjson.loads(raw) if len(raw) <= 2 * MAX_TOKEN else None
    except orjson.JSONDecodeError:
        body = None
    token = body.get("token") if isinstance(body, dict) else None
    source = _source(request, settings)
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN:
        await services.shares.refused(target.study_uid, "no token", source=source)
        raise BadRequest("the link holds no token")
    try:
        visitor = await verify_token(request, token)
    except InvalidToken as exc:
        await services.shares.refused(target.study_uid, str(exc), source=source)
        return Response(f"This share link cannot be opened: {exc}.", status_code=401)
    expires = await services.shares.open(visitor, target.study_uid, source=source)
    expiry = max(0, int(expires.timestamp() - time.time()))
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    for header in share_cookie_headers(request, settings, target.study_uid, token, expiry):
        response.headers.append("set-cookie", header)
    return response


@router.get(
    "/share/{study}/view",
    response_class=HTMLResponse,
    openapi_extra=page(Permission.READ, audited=True, shared=True),
)
async def shared_viewer(
    request: Request,
    study: str,
    services: ServicesDep,
    settings: SettingsDep,
    restrict: RestrictionDep,
    series: str | None = None,
) -> Response:
    """The built-in viewer of the shared study, for the share cookie's holder."""
    overview = await viewed_overview(request, study, services, settings, restrict)
    return viewer_page(request, overview, dicomweb_path(request, settings), series, shared=True)

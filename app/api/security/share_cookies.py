"""The share cookie (issue 22, point 5): a share link's token, held by the browser of someone
without an account, for the paths of the one study it shares.

A share link is ``/share/{study}#<token>``: the token is in the fragment, which the browser never
sends (no access log, proxy or ``Referer`` sees it). The share page's script posts it once to
``/share/{study}/open``, which checks it and answers with this cookie, then strips the fragment
from the address bar. The cookie is set twice, each with a ``Path`` of the study alone: the
share's pages (``/share/{study}``) and the study's DICOMweb resources (``{root}/studies/{study}``),
so the browser sends it nowhere else. HttpOnly (scripts never see the token), ``SameSite=Strict``
(never on a request another site starts), ``Secure`` under HTTPS (the ``__Secure-`` prefix); it
lives as long as the token.

The guard (:mod:`.access`) takes the cookie only when nothing else authenticates the request
(a bearer token, a session), only on DICOMweb routes and the pages declared ``shared``, and
only for safe methods: a share grants reading one study, nothing more. The token is verified as
any bearer token (signature, expiry, the deny list), and must be restricted to studies; the
grant check then refuses any other study (403).
"""

from typing import Final
from urllib.parse import quote

from fastapi import Request

from app.api.security.cookies import cookie_header
from app.api.security.sessions import is_secure
from app.config import Settings

__all__ = ["SHARE_COOKIE", "share_cookie", "share_cookie_headers", "share_pages_path"]

SHARE_COOKIE: Final = "lightbox-share"
SECURE_SHARE_COOKIE: Final = "__Secure-lightbox-share"
#: where the share's pages are (``/share/{study}``)
SHARE_PREFIX: Final = "/share"


def _name(secure: bool) -> str:
    return SECURE_SHARE_COOKIE if secure else SHARE_COOKIE


def share_pages_path(study_uid: str) -> str:
    return f"{SHARE_PREFIX}/{quote(study_uid, safe='.')}"


def share_cookie(request: Request, settings: Settings) -> str | None:
    """The share token the browser sent for this path, if any."""
    value = request.cookies.get(_name(is_secure(request, settings)))
    return value or None


def share_cookie_headers(
    request: Request, settings: Settings, study_uid: str, token: str, max_age: int
) -> list[str]:
    """The ``Set-Cookie`` values that give the browser the share's token for the study's pages
    and DICOMweb resources (``max_age`` 0 removes them)."""
    secure = is_secure(request, settings)
    root_path: str = request.scope.get("root_path", "").rstrip("/")
    paths = (
        root_path + share_pages_path(study_uid),
        f"{root_path}{settings.dicomweb_root}/studies/{quote(study_uid, safe='.')}",
    )
    return [
        cookie_header(
            _name(secure), token, path=path, max_age=max_age, secure=secure, same_site="Strict"
        )
        for path in paths
    ]

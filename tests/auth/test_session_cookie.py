"""The session cookie at the API (issue 22, point 1): the DICOMweb root accepts a signed-in
browser's cookie, state-changing requests made with it need the session's CSRF token (STOW-RS
and DELETE included), bearer clients are unaffected, expired sessions are refused, used sessions
are renewed, and the cookie's name and attributes follow the scheme."""

import time
import uuid
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

from app.api.security.sessions import COOKIE, SECURE_COOKIE
from app.auth.principal import Permission
from app.auth.sessions import LOCAL_IDP
from app.services.audit import AuditFilter
from tests.auth.helpers import Tokens, auth_settings
from tests.factories import make_instance, multipart, stow_headers
from tests.web.helpers import csrf_header, signed_in, web_client

ROOT = "/dicom-web"
ALL = [Permission.READ, Permission.WRITE, Permission.DELETE, Permission.ADMIN]


async def test_cookie_authenticates_reads(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        assert (await http.get(f"{ROOT}/studies")).status_code == 401
        await signed_in(http, services, permissions=["read"])
        assert (await http.get(f"{ROOT}/studies")).status_code == 204
        # the cookie's permissions hold: a read-only session stores nothing
        session = await signed_in(http, services, permissions=["read"])
        body = multipart([make_instance()])
        refused = await http.post(
            f"{ROOT}/studies",
            content=body,
            headers={**stow_headers(), **csrf_header(services, session)},
        )
        assert refused.status_code == 403
        assert "write" in refused.json()["detail"]


async def test_stow_and_delete_with_the_cookie_need_the_csrf_token(
    database_url: str, tmp_path: Path
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    study = generate_uid()
    body = multipart([make_instance(StudyInstanceUID=study)])
    async with web_client(settings) as (services, http):
        uploader = f"uploader-{uuid.uuid4().hex}"  # the audit trail outlives each test
        session = await signed_in(http, services, subject=uploader)
        other = await services.sessions.start(uploader, ALL, name="u", idp=LOCAL_IDP)
        url = f"{ROOT}/studies"
        missing = await http.post(url, content=body, headers=stow_headers())
        assert missing.status_code == 403
        assert missing.json()["detail"] == "the CSRF token is missing or wrong"
        wrong = await http.post(
            url, content=body, headers={**stow_headers(), "X-CSRF-Token": "x" * 43}
        )
        assert wrong.status_code == 403
        of_another_session = await http.post(
            url,
            content=body,
            headers={**stow_headers(), "X-CSRF-Token": services.sessions.csrf_token(other.claims)},
        )
        assert of_another_session.status_code == 403
        # a form field does not count outside the pages (the API reads no form bodies)
        assert (await http.get(f"{ROOT}/studies")).status_code == 204  # nothing was stored
        stored = await http.post(
            url, content=body, headers={**stow_headers(), **csrf_header(services, session)}
        )
        assert stored.status_code == 200, stored.text

        assert (await http.delete(f"{url}/{study}")).status_code == 403
        deleted = await http.delete(f"{url}/{study}", headers=csrf_header(services, session))
        assert deleted.status_code == 204, deleted.text

        await services.audit.flush()
        rows, _ = await services.audit.search(AuditFilter(actor=uploader), limit=50, offset=0)
        refusals = [r for r in rows if r["outcome"] == "denied"]
        assert {r["detail"] for r in refusals} == {"the CSRF token is missing or wrong"}
        assert len(refusals) == 4


async def test_bearer_clients_need_no_csrf_token(database_url: str, tmp_path: Path) -> None:
    """The CSRF check is for the cookie only: a request with an Authorization header is a
    program's, whatever cookies it also has."""
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await signed_in(http, services, permissions=["read"])  # a read-only cookie as well
        stored = await http.post(
            f"{ROOT}/studies",
            content=multipart([make_instance()]),
            headers={**stow_headers(), **Tokens(settings).headers(["write"])},
        )
        assert stored.status_code == 200, stored.text


async def test_expired_or_foreign_cookies_are_refused(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data", leeway_seconds=0)
    async with web_client(settings) as (services, http):
        idle = settings.auth.session_idle_seconds
        token, _ = services.sessions.signer.issue(
            "alice", ALL, name="a", idp=LOCAL_IDP, now=time.time() - idle - 1
        )
        http.cookies.set(COOKIE, token)
        refused = await http.get(f"{ROOT}/studies")
        assert refused.status_code == 401
        assert "expired" in refused.json()["detail"]
        page = await http.get("/")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/"
        assert f"{COOKIE}=;" in page.headers["set-cookie"]  # the dead cookie is dropped
        assert "Max-Age=0" in page.headers["set-cookie"]
        # a bearer token is no session, even in the cookie (nor a forged one)
        http.cookies.set(COOKIE, Tokens(settings).make(["read"]))
        assert (await http.get(f"{ROOT}/studies")).status_code == 401
        assert (await http.get("/")).status_code == 303
        forged = token.rsplit(".", 1)[0] + ".AAAA"
        http.cookies.set(COOKIE, forged)
        assert (await http.get("/")).status_code == 303


async def test_a_used_session_is_renewed(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        signer = services.sessions.signer
        fresh = await signed_in(http, services, permissions=["read"])
        response = await http.get(f"{ROOT}/studies")
        assert "set-cookie" not in response.headers  # not due yet
        older, claims = signer.issue(
            "alice",
            [Permission.READ],
            name="a",
            idp="https://idp.example",  # not a local user: no directory to ask
            now=time.time() - signer.policy.refresh_after - 1,
        )
        http.cookies.set(COOKIE, older)
        renewed = await http.get(f"{ROOT}/studies")
        assert renewed.status_code == 204
        cookie = renewed.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        for attribute in ("HttpOnly", "SameSite=Lax", "Path=/"):
            assert attribute in cookie
        assert "Secure" not in cookie  # plain http
        new_token = cookie.split(";")[0].split("=", 1)[1]
        new = signer.read(new_token, [Permission.READ])
        assert new.session_id == claims.session_id
        assert new.expires_at > claims.expires_at
        assert fresh.claims.session_id != new.session_id


async def test_a_disabled_users_session_ends_at_its_renewal(
    database_url: str, tmp_path: Path
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        current: dict[str, frozenset[Permission] | None] = {"alice": frozenset(ALL)}

        async def lookup(subject: str) -> frozenset[Permission] | None:
            return current.get(subject)

        services.sessions.use_directory(lookup)
        signer = services.sessions.signer
        token, _ = signer.issue(
            "alice", ALL, name="a", idp=LOCAL_IDP, now=time.time() - signer.policy.refresh_after
        )
        http.cookies.set(COOKIE, token)
        assert (await http.get(f"{ROOT}/studies")).status_code == 204
        current["alice"] = frozenset({Permission.READ})  # the role changed: taken at renewal
        http.cookies.clear()  # the client kept the renewed one: present the old one again
        http.cookies.set(COOKIE, token)
        renewed = await http.get(f"{ROOT}/studies")
        new_token = renewed.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        verified = await http._transport.app.state.verifier.verify(new_token)  # type: ignore[attr-defined]
        assert verified.permissions == {Permission.READ}
        http.cookies.clear()
        http.cookies.set(COOKIE, token)
        current["alice"] = None  # disabled
        refused = await http.get(f"{ROOT}/studies")
        assert refused.status_code == 401
        assert "disabled" in refused.json()["detail"]


async def test_secure_cookie_under_https(database_url: str, tmp_path: Path) -> None:
    """Under HTTPS (the request's scheme, or a trusted proxy's X-Forwarded-Proto) the cookie is
    ``__Host-``-prefixed and Secure, and the plain name is not read."""
    settings = auth_settings(database_url, tmp_path / "data", trusted_proxies=["127.0.0.1"])
    async with web_client(settings) as (services, http):
        session = await services.sessions.start("alice", ALL, name="a", idp=LOCAL_IDP)
        https = httpx.AsyncClient(transport=http._transport, base_url="https://t")
        async with https:
            https.cookies.set(COOKIE, session.token)
            assert (await https.get(f"{ROOT}/studies")).status_code == 401
            https.cookies.clear()
            https.cookies.set(SECURE_COOKIE, session.token)
            assert (await https.get(f"{ROOT}/studies")).status_code == 204
            logout = await https.post(
                "/logout", headers={**csrf_header(services, session), "Accept": "text/html"}
            )
            assert logout.status_code == 303
            assert logout.headers["set-cookie"].startswith(f"{SECURE_COOKIE}=;")
            assert "Secure" in logout.headers["set-cookie"]
        again = await services.sessions.start("alice", ALL, name="a", idp=LOCAL_IDP)
        proxied = {"X-Forwarded-Proto": "https", "Cookie": f"{SECURE_COOKIE}={again.token}"}
        assert (await http.get(f"{ROOT}/studies", headers=proxied)).status_code == 204
    untrusted = auth_settings(database_url, tmp_path / "untrusted")
    async with web_client(untrusted) as (services, http):
        session = await services.sessions.start("alice", ALL, name="a", idp=LOCAL_IDP)
        spoofed = {"X-Forwarded-Proto": "https", "Cookie": f"{SECURE_COOKIE}={session.token}"}
        assert (await http.get(f"{ROOT}/studies", headers=spoofed)).status_code == 401

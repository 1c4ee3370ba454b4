"""Share links (issue 22, point 5): made by a writer, opened without an account through the
share cookie, refused for another study, expired or revoked, listed and revoked by their maker
and by administrators, every use audited."""

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

from app.services.audit import AuditFilter
from app.services.tokens import TokenKind
from tests.auth.helpers import auth_settings
from tests.web.archive import store_study, text_of
from tests.web.helpers import ALL, csrf_header, signed_in, web_client
from tests.web.test_headers import inline_code

HTMX = {"HX-Request": "true"}


@asynccontextmanager
async def stranger(http: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """Another browser on the same app: no session, its own cookies."""
    app = http._transport.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as other:
        yield other


async def make_link(http: httpx.AsyncClient, token: str, study: str, **form: str) -> str:
    made = await http.post(
        f"/studies/{study}/shares", data={"csrf_token": token, "expires": "7", **form}, headers=HTMX
    )
    assert made.status_code == 200, made.text
    found = re.search(r'id="share-url" type="text" readonly value="([^"]+)"', made.text)
    assert found, made.text
    return found.group(1)


async def test_a_link_opens_the_study_and_only_it(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        study = await store_study(http, settings, PatientName="Shared^Sam", PatientID="SH-1")
        other = await store_study(http, settings, PatientName="Other^Olga", PatientID="SH-2")
        session = await signed_in(http, services, subject="alice", permissions=["read", "write"])
        link = await make_link(http, csrf_header(services, session)["X-CSRF-Token"], study)
        # the token is in the fragment: no request, log or Referer ever holds it
        assert link.startswith(f"http://t/share/{study}#")
        token = link.split("#", 1)[1]

        async with stranger(http) as visitor:
            landing = await visitor.get(f"/share/{study}")
            assert landing.status_code == 200
            assert inline_code(landing.text) == []
            # a form post from another site cannot open it (JSON only)
            form = await visitor.post(f"/share/{study}/open", data={"token": token})
            assert form.status_code in (415, 422)
            opened = await visitor.post(f"/share/{study}/open", json={"token": token})
            assert opened.status_code == 204
            cookies = opened.headers.get_list("set-cookie")
            assert len(cookies) == 2
            for cookie in cookies:
                assert "HttpOnly" in cookie
                assert "SameSite=Strict" in cookie
            paths = sorted(re.search(r"Path=([^;]+)", c).group(1) for c in cookies)  # type: ignore[union-attr]
            assert paths == [f"/dicom-web/studies/{study}", f"/share/{study}"]
            # the viewer, and the study's DICOMweb resources, with the cookie
            view = await visitor.get(f"/share/{study}/view")
            assert view.status_code == 200
            assert "Shared, Sam" in view.text
            assert "Back to the study" not in view.text
            series = await visitor.get(f"/dicom-web/studies/{study}/series")
            assert series.status_code == 200
            # nothing else: the cookie is not sent elsewhere, and the grant is this study
            assert (await visitor.get("/")).status_code == 303  # sign in
            assert (await visitor.get("/dicom-web/studies")).status_code == 401
            forged = {"Cookie": f"lightbox-share={token}"}
            elsewhere = await visitor.get(f"/dicom-web/studies/{other}/series", headers=forged)
            assert elsewhere.status_code == 403
            assert (await visitor.get(f"/share/{other}/view", headers=forged)).status_code == 403
            # a share only reads
            assert (await visitor.delete(f"/dicom-web/studies/{study}")).status_code == 403
            # the link used for another study is refused
            refused = await visitor.post(f"/share/{other}/open", json={"token": token})
            assert refused.status_code == 403
            # the token as a bearer token: the same grant
            bearer = {"Authorization": f"Bearer {token}"}
            assert (
                await visitor.get(f"/dicom-web/studies/{study}", headers=bearer)
            ).status_code == 200
            assert (
                await visitor.get(f"/dicom-web/studies/{other}", headers=bearer)
            ).status_code == 403

        await services.audit.flush()
        opened_events, _ = await services.audit.search(
            AuditFilter(action="share-open"), limit=20, offset=0
        )
        outcomes = sorted((e["outcome"], e["study_uid"]) for e in opened_events)
        assert ("success", study) in outcomes
        assert ("denied", other) in outcomes
        uses, _ = await services.audit.search(
            AuditFilter(actor="share:alice", study_uid=study), limit=50, offset=0
        )
        assert {e["action"] for e in uses} >= {"share-open", "view", "search"}
        made, _ = await services.audit.search(AuditFilter(actor="alice"), limit=50, offset=0)
        assert any(e["action"] == "share-create" and e["study_uid"] == study for e in made)


async def test_revoked_links_are_refused(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        study = await store_study(http, settings)
        session = await signed_in(http, services, subject="bob", permissions=["read", "write"])
        csrf = csrf_header(services, session)["X-CSRF-Token"]
        link = await make_link(http, csrf, study, label="Dr Who")
        token = link.split("#", 1)[1]
        async with stranger(http) as visitor:
            opened = await visitor.post(f"/share/{study}/open", json={"token": token})
            assert opened.status_code == 204
            listed = await http.get("/shares")
            assert "share:bob for Dr Who" in text_of(listed.text)
            jti = re.search(r'data-jti="([0-9a-f]+)"', listed.text).group(1)  # type: ignore[union-attr]
            revoked = await http.post(f"/shares/{jti}/revoke", data={"csrf_token": csrf})
            assert revoked.status_code == 303
            assert "revoked" in text_of((await http.get("/shares")).text)
            # refused wherever it is used: the viewer, DICOMweb, a new opening
            view = await visitor.get(f"/share/{study}/view")
            assert view.status_code == 401
            assert "This link cannot be opened" in view.text
            assert "revoked" in view.text
            assert (await visitor.get(f"/dicom-web/studies/{study}/series")).status_code == 401
            again = await visitor.post(f"/share/{study}/open", json={"token": token})
            assert again.status_code == 401


async def test_expired_links_are_refused(database_url: str, tmp_path: Path) -> None:
    # no clock-skew leeway, so that a token a second old has expired
    settings = auth_settings(database_url, tmp_path / "data", leeway_seconds=0)
    async with web_client(settings) as (services, http):
        study = await store_study(http, settings)
        issued = await services.tokens.issue(
            TokenKind.SHARE, "share:bob", ["read"], 1, studies=[study], created_by="bob"
        )
        async with stranger(http) as visitor:
            opened = await visitor.post(f"/share/{study}/open", json={"token": issued.token})
            assert opened.status_code == 204
            await asyncio.sleep(2.1)
            assert (await visitor.get(f"/share/{study}/view")).status_code == 401
            bearer = {"Authorization": f"Bearer {issued.token}"}
            expired = await visitor.get(f"/dicom-web/studies/{study}/series", headers=bearer)
            assert expired.status_code == 401
            again = await visitor.post(f"/share/{study}/open", json={"token": issued.token})
            assert again.status_code == 401
            assert "expired" in again.text


async def test_only_the_maker_or_an_admin_revokes(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        study = await store_study(http, settings)
        alice = await signed_in(http, services, subject="alice", permissions=["read", "write"])
        await make_link(http, csrf_header(services, alice)["X-CSRF-Token"], study)
        jti = (await services.shares.list(maker="alice")).links[0].jti
        mallory = await signed_in(http, services, subject="mallory", permissions=["read", "write"])
        csrf = csrf_header(services, mallory)["X-CSRF-Token"]
        # not on mallory's list, and mallory may not revoke it
        assert jti not in (await http.get("/shares")).text
        refused = await http.post(f"/shares/{jti}/revoke", data={"csrf_token": csrf})
        assert refused.status_code == 403
        # a token that is no share link is not one to revoke here
        cli = await services.tokens.issue(TokenKind.CLI, "robot", ["read"], 60)
        assert (
            await http.post(f"/shares/{cli.record.jti}/revoke", data={"csrf_token": csrf})
        ).status_code == 404
        admin = await signed_in(http, services, subject="root", permissions=ALL)
        everyone = await http.get("/admin/shares")
        assert everyone.status_code == 200
        assert jti in everyone.text
        done = await http.post(
            f"/shares/{jti}/revoke",
            data={
                "csrf_token": csrf_header(services, admin)["X-CSRF-Token"],
                "next": "/admin/shares",
            },
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/admin/shares"
        link = (await services.shares.list(maker="alice")).links[0]
        assert link.state == "revoked"
        assert link.revoked_by == "root"


async def test_bad_share_input(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        study = await store_study(http, settings)
        session = await signed_in(http, services, permissions=["read", "write"])
        csrf = csrf_header(services, session)["X-CSRF-Token"]
        for form, status in (
            ({"expires": "0"}, 400),
            ({"expires": "365"}, 400),
            ({"expires": "soon"}, 400),
            ({"expires": "7", "label": "x" * 65}, 400),
        ):
            made = await http.post(f"/studies/{study}/shares", data={"csrf_token": csrf, **form})
            assert made.status_code == status, form
        missing = await http.post(
            f"/studies/{generate_uid()}/shares", data={"csrf_token": csrf, "expires": "7"}
        )
        assert missing.status_code == 404
        async with stranger(http) as visitor:
            for body in ({}, {"token": ""}, {"token": "x" * 9000}):
                assert (await visitor.post(f"/share/{study}/open", json=body)).status_code == 400
            garbage = await visitor.post(f"/share/{study}/open", json={"token": "not.a.jwt"})
            assert garbage.status_code == 401
            # a session's token is no share link: its grant is not a study
            assert (await visitor.get(f"/share/{study}/view")).status_code == 401

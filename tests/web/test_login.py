"""Signing in and out on the pages (issue 22, point 1): the session cookie, the generic
refusals, login CSRF, the redirect after sign-in, logout; on PostgreSQL and SQLite."""

import re
from pathlib import Path

import httpx
import pytest

from app.api.security.sessions import COOKIE
from app.services.container import Services
from app.services.logins import GENERIC_FAILURE
from tests.auth.helpers import auth_settings
from tests.web.helpers import csrf_header, set_cookie, signed_in, web_client

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def login_csrf(http: httpx.AsyncClient) -> str:
    """Open the sign-in page (which sets the pre-login cookie) and read its form's token."""
    page = await http.get("/login")
    assert page.status_code == 200
    found = _CSRF.search(page.text)
    assert found is not None
    return found.group(1)


async def sign_in(
    http: httpx.AsyncClient, username: str, password: str, next_path: str = "/"
) -> httpx.Response:
    token = await login_csrf(http)
    return await http.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": next_path},
    )


async def _users(services: Services) -> None:
    await services.users.add("alice", PASSWORD, "reader", by=None)
    await services.users.add("mallory", PASSWORD, "admin", by=None)
    await services.users.set_enabled("mallory", False, by=None)


async def test_sign_in_opens_a_session(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await _users(services)
        response = await sign_in(http, "Alice", PASSWORD, next_path="/?from=login")
        assert response.status_code == 303
        assert response.headers["location"] == "/?from=login"
        cookies = response.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith(f"{COOKIE}="))
        for attribute in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=1800"):
            assert attribute in session
        assert any(c.startswith("lightbox-login=;") for c in cookies)  # used up
        home = await http.get("/")
        assert home.status_code == 200
        assert "Signed in as <strong>alice</strong>" in home.text
        # the reader has no write controls, and may read through the DICOMweb root
        assert "Store instances" not in (await http.get("/about")).text
        assert (await http.get("/dicom-web/studies")).status_code == 204


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong password!"), ("nobody", PASSWORD), ("mallory", PASSWORD), ("", "")],
)
async def test_every_refusal_says_the_same(
    database_url: str, tmp_path: Path, username: str, password: str
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await _users(services)
        response = await sign_in(http, username, password)
        assert response.status_code == 401
        assert GENERIC_FAILURE in response.text
        assert not any(c.startswith(f"{COOKIE}=") for c in response.headers.get_list("set-cookie"))
        assert (await http.get("/")).status_code == 303
        assert 'role="alert"' in response.text


async def test_sign_in_needs_the_forms_csrf_token(database_url: str, tmp_path: Path) -> None:
    """Login CSRF: a form posted from elsewhere has neither the pre-login cookie nor its token."""
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await _users(services)
        fields = {"username": "alice", "password": PASSWORD}
        missing = await http.post("/login", data=fields)
        assert missing.status_code == 400
        assert "has expired" in missing.text
        token = await login_csrf(http)
        wrong = await http.post("/login", data={**fields, "csrf_token": token[:-2] + "xx"})
        assert wrong.status_code == 400
        http.cookies.clear()  # the token without its cookie (another browser's page)
        stolen = await http.post("/login", data={**fields, "csrf_token": token})
        assert stolen.status_code == 400
        assert (await http.get("/")).status_code == 303


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "/logout"]
)
async def test_no_open_redirect(database_url: str, tmp_path: Path, target: str) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await _users(services)
        response = await sign_in(http, "alice", PASSWORD, next_path=target)
        assert response.status_code == 303
        assert response.headers["location"] == "/"


async def test_bad_forms_are_refused_clearly(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (_services, http):
        huge = await http.post(
            "/login",
            content=b"username=a&password=" + b"x" * 20_000,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"},
        )
        assert huge.status_code == 413
        assert "too large" in huge.text
        json_body = await http.post("/login", json={"username": "a"})
        assert json_body.status_code == 400
        assert "x-www-form-urlencoded" in json_body.text


async def test_logout_ends_the_session(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        session = await signed_in(http, services, subject="bob")
        # without the session's CSRF token a cross-site form cannot sign anyone out
        forged = await http.post("/logout", data={"csrf_token": "forged"})
        assert forged.status_code == 403
        assert "CSRF" in forged.text
        assert (await http.get("/")).status_code == 200
        token = services.sessions.csrf_token(session.claims)
        response = await http.post("/logout", data={"csrf_token": token})
        assert response.status_code == 303
        assert response.headers["location"] == "/login"
        assert response.headers["set-cookie"].startswith(f"{COOKIE}=;")
        assert (await http.get("/")).status_code == 303
        # the session is revoked, not only forgotten by this browser: its token is refused
        set_cookie(http, COOKIE, session.token)
        assert (await http.get("/")).status_code == 303
        set_cookie(http, COOKIE, session.token)  # the redirect dropped it again
        refused = await http.get("/dicom-web/studies")
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]
        record = await services.tokens.get(session.claims.session_id)
        assert (record.kind, record.revoked_by, record.revoke_reason) == (
            "session",
            "bob",
            "logout",
        )
        # htmx's header works as well as the form field
        session = await signed_in(http, services, subject="bob")
        assert (
            await http.post("/logout", headers=csrf_header(services, session))
        ).status_code == 303


async def test_disabling_a_user_or_a_new_password_ends_their_sessions(
    database_url: str, tmp_path: Path
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await _users(services)
        assert (await sign_in(http, "alice", PASSWORD)).status_code == 303
        assert (await http.get("/")).status_code == 200
        await services.users.set_password("alice", "a brand new password", by="cli:admin")
        assert (await http.get("/")).status_code == 303
        assert (await sign_in(http, "alice", "a brand new password")).status_code == 303
        assert (await http.get("/")).status_code == 200
        await services.users.set_enabled("alice", False, by="cli:admin")
        assert (await http.get("/")).status_code == 303
        assert (await sign_in(http, "alice", "a brand new password")).status_code == 401


async def test_a_session_revoked_by_an_administrator_ends(
    database_url: str, tmp_path: Path
) -> None:
    """``lightbox token revoke`` (the token registry) ends a browser session too."""
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        session = await signed_in(http, services, subject="carol")
        listed, _ = await services.tokens.list()
        assert [r.jti for r in listed if r.kind == "session"] == [session.claims.session_id]
        await services.tokens.revoke(session.claims.session_id, by="admin", reason="lost laptop")
        page = await http.get("/")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/"

"""Signing in with an OpenID Connect issuer (issue 22, point 1), against a real provider: the
npm package oidc-provider run by the tests (tests/web/oidc), driven through its development
sign-in and consent forms. Authorization code with PKCE, state, nonce, ID token checks, claims
mapped to permissions, our own session at the end; the ways it must fail."""

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
import pytest_asyncio

from app.api.security.sessions import COOKIE
from app.config import Settings
from app.services.audit import AuditFilter
from app.services.container import Services
from app.services.oidc_login import PURPOSE
from app.web.oidc import TRANSACTION_COOKIE
from tests.auth.helpers import auth_settings
from tests.web.helpers import set_cookie, web_client
from tests.web.oidc_provider import RunningProvider, running_provider

CALLBACK = "http://t/login/oidc/callback"
SECRET = "a-client-secret-for-tests"
CLIENTS = [
    {
        "client_id": "lightbox",
        "client_secret": SECRET,
        "redirect_uris": [CALLBACK],
        "token_endpoint_auth_method": "client_secret_basic",
    },
    {
        "client_id": "lightbox-post",
        "client_secret": SECRET,
        "redirect_uris": [CALLBACK],
        "token_endpoint_auth_method": "client_secret_post",
    },
    {
        "client_id": "lightbox-public",
        "redirect_uris": [CALLBACK],
        "token_endpoint_auth_method": "none",
    },
]
ACCOUNTS = {
    "alice": {"name": "Alice Example", "preferred_username": "alice", "roles": ["read", "write"]},
    "bob": {"preferred_username": "bob", "roles": ["read"]},
    "eve": {"name": "Eve", "roles": ["unrelated-role"]},
    "xss": {"name": '<script>alert("x")</script>', "roles": ["read"]},
    "scoped": {"name": "Scoped", "roles": ["read"], "lightbox_studies": ["1.2.3"]},
}
_FORM = re.compile(r'<form[^>]*action="([^"]+)"', re.S)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProvider]:
    with running_provider(CLIENTS, ACCOUNTS, log_dir=tmp_path_factory.mktemp("oidc")) as running:
        yield running


def oidc_settings(
    database_url: str, data_dir: Path, provider: RunningProvider, client_id: str = "lightbox"
) -> Settings:
    return auth_settings(
        database_url,
        data_dir,
        oidc_issuer=provider.issuer,
        oidc_allow_http=True,
        oidc_client_id=client_id,
        oidc_client_secret=None if client_id == "lightbox-public" else SECRET,
        oidc_client_auth="client_secret_post"
        if client_id == "lightbox-post"
        else "client_secret_basic",
        oidc_scopes=["openid", "profile", "roles"],
        oidc_login_label="Test IdP",
    )


@pytest_asyncio.fixture
async def idp() -> AsyncIterator[httpx.AsyncClient]:
    """The browser's side at the provider (its own cookies)."""
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def _follow_at_provider(idp: httpx.AsyncClient, url: str) -> httpx.Response:
    """Follow redirects while they stay at the provider; the last response (a page, or the
    redirect back to Lightbox)."""
    for _ in range(10):
        response = await idp.get(url)
        location = response.headers.get("location")
        if response.status_code not in (302, 303) or location is None:
            return response
        target = urljoin(url, location)
        if urlsplit(target).netloc != urlsplit(url).netloc:
            return response  # leaving the provider
        url = target
    raise AssertionError("too many redirects at the provider")


async def _submit(idp: httpx.AsyncClient, page: httpx.Response, fields: dict[str, str]) -> str:
    """Post a provider page's form; the URL it sends the browser to."""
    found = _FORM.search(page.text)
    assert found is not None, page.text[:500]
    response = await idp.post(urljoin(str(page.url), found.group(1)), data=fields)
    assert response.status_code in (302, 303), response.text[:500]
    return urljoin(str(response.url), response.headers["location"])


async def sign_in_at_provider(idp: httpx.AsyncClient, authorize: str, login: str) -> str:
    """The provider's sign-in and consent (a browser new to the provider); the callback URL it
    sends the browser back to."""
    idp.cookies.clear()
    page = await _follow_at_provider(idp, authorize)
    assert 'name="login"' in page.text, page.text[:500]
    after_login = await _submit(idp, page, {"prompt": "login", "login": login, "password": "x"})
    page = await _follow_at_provider(idp, after_login)
    if page.status_code in (302, 303):  # consent given before: straight back
        return urljoin(str(page.url), page.headers["location"])
    assert 'value="consent"' in page.text, page.text[:500]
    back = await _submit(idp, page, {"prompt": "consent"})
    response = await _follow_at_provider(idp, back)
    return urljoin(str(response.url), response.headers["location"])


async def start(http: httpx.AsyncClient, next_path: str = "/") -> str:
    """Lightbox's /login/oidc: the authorization URL (the transaction cookie is kept)."""
    begun = await http.get("/login/oidc", params={"next": next_path})
    assert begun.status_code == 303, begun.text
    cookie = begun.headers["set-cookie"]
    assert cookie.startswith(f"{TRANSACTION_COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/login/oidc", "Max-Age=600"):
        assert attribute in cookie
    return begun.headers["location"]


async def callback(http: httpx.AsyncClient, url: str) -> httpx.Response:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK, url
    return await http.get(f"{parts.path}?{parts.query}")


async def _audit(services: Services, action: str, actor: str | None) -> list[dict[str, Any]]:
    await services.audit.flush()
    rows, _ = await services.audit.search(AuditFilter(action=action), limit=50, offset=0)
    return [r for r in rows if actor is None or r["actor"] == actor]


@pytest.mark.parametrize("client_id", ["lightbox", "lightbox-post", "lightbox-public"])
async def test_sign_in_with_the_issuer(
    database_url: str,
    tmp_path: Path,
    provider: RunningProvider,
    idp: httpx.AsyncClient,
    client_id: str,
) -> None:
    settings = oidc_settings(database_url, tmp_path / "data", provider, client_id)
    async with web_client(settings) as (services, http):
        login = await http.get("/login")
        assert "Sign in with Test IdP" in login.text
        authorize = await start(http, "/?after=sso")
        query = parse_qs(urlsplit(authorize).query)
        assert authorize.startswith(f"{provider.issuer}/auth?")
        assert query["client_id"] == [client_id]
        assert query["redirect_uri"] == [CALLBACK]
        assert query["code_challenge_method"] == ["S256"]
        assert query["response_type"] == ["code"]
        assert set(query["scope"][0].split()) == {"openid", "profile", "roles"}
        assert len(query["state"][0]) >= 43
        assert len(query["nonce"][0]) >= 43
        back = await sign_in_at_provider(idp, authorize, "alice")
        signed = await callback(http, back)
        assert signed.status_code == 303, signed.text
        assert signed.headers["location"] == "/?after=sso"
        cookies = signed.headers.get_list("set-cookie")
        assert any(c.startswith(f"{COOKIE}=") and "HttpOnly" in c for c in cookies)
        assert any(c.startswith(f"{TRANSACTION_COOKIE}=;") for c in cookies)  # secrets dropped
        home = await http.get("/")
        assert home.status_code == 200
        assert "Signed in as <strong>Alice Example</strong>" in home.text
        about = await http.get("/about")  # what the session may do: roles read, write
        assert "Store instances" in about.text
        assert "<h2>Delete</h2>" not in about.text
        assert (await http.get("/dicom-web/studies")).status_code == 204
        # our own session: in the token registry, for the issuer's subject
        records, _ = await services.tokens.list()
        assert [(r.kind, r.subject) for r in records] == [("session", "alice")]
        logins = await _audit(services, "login", "alice")
        assert logins[0]["detail"] == f"OpenID Connect sign-in ({provider.issuer})"


async def test_claims_without_permissions_give_no_session(
    database_url: str, tmp_path: Path, provider: RunningProvider, idp: httpx.AsyncClient
) -> None:
    settings = oidc_settings(database_url, tmp_path / "data", provider)
    async with web_client(settings) as (services, http):
        for login, message, reason in (
            ("eve", "has no access to Lightbox yet", "no permission in the claims"),
            ("scoped", "may only see some studies", "grants only some studies"),
        ):
            back = await sign_in_at_provider(idp, await start(http), login)
            refused = await callback(http, back)
            assert refused.status_code == 400
            assert message in refused.text
            assert not any(
                c.startswith(f"{COOKIE}=") for c in refused.headers.get_list("set-cookie")
            )
            assert (await http.get("/")).status_code == 303
            failures = await _audit(services, "login-failure", login)
            assert reason in failures[0]["detail"]


async def test_the_callback_must_be_this_browsers(
    database_url: str, tmp_path: Path, provider: RunningProvider, idp: httpx.AsyncClient
) -> None:
    """A callback is only taken with the transaction cookie of the browser that started the
    sign-in, and its state: login CSRF and injected codes fail."""
    settings = oidc_settings(database_url, tmp_path / "data", provider)
    async with web_client(settings) as (services, http):
        back = await sign_in_at_provider(idp, await start(http), "bob")
        transaction = http.cookies.get(TRANSACTION_COOKIE)
        assert transaction is not None
        # another browser (no transaction cookie) cannot use the code
        async with httpx.AsyncClient(transport=http._transport, base_url="http://t") as other:
            stolen = await callback(other, back)
            assert stolen.status_code == 400
            assert "could not be completed" in stolen.text
        # a changed state is refused
        tampered = re.sub(r"state=[^&]+", "state=forged", back)
        assert (await callback(http, tampered)).status_code == 400
        # a response naming another issuer (RFC 9207, a mix-up) is refused
        assert "iss=" in back
        set_cookie(http, TRANSACTION_COOKIE, transaction, path="/login/oidc")
        mixed_up = re.sub(r"iss=[^&]+", "iss=https%3A%2F%2Fevil.example", back)
        assert (await callback(http, mixed_up)).status_code == 400
        # the genuine callback still works once
        set_cookie(http, TRANSACTION_COOKIE, transaction, path="/login/oidc")
        assert (await callback(http, back)).status_code == 303
        # and the code cannot be used twice (the provider refuses it)
        set_cookie(http, TRANSACTION_COOKIE, transaction, path="/login/oidc")
        replayed = await callback(http, back)
        assert replayed.status_code == 400
        reasons = [r["detail"] for r in await _audit(services, "login-failure", None)][:4]
        assert any("another issuer" in r for r in reasons)
        assert any("no sign-in in progress" in r for r in reasons)
        assert any("state" in r for r in reasons)
        assert any("token endpoint refused" in r for r in reasons)


async def test_nonce_and_pkce_are_checked(
    database_url: str, tmp_path: Path, provider: RunningProvider, idp: httpx.AsyncClient
) -> None:
    """The sealed sign-in is rewritten (with the server's own key, as only the server can): a
    different nonce fails the ID token's check; a different PKCE verifier fails at the issuer."""
    settings = oidc_settings(database_url, tmp_path / "data", provider)
    async with web_client(settings) as (services, http):
        signer = services.sessions.signer
        for field, expected in (("nonce", "nonce is not this sign-in's"), ("verifier", "refused")):
            back = await sign_in_at_provider(idp, await start(http), "bob")
            sealed = http.cookies.get(TRANSACTION_COOKIE)
            assert sealed is not None
            started = signer.unseal(PURPOSE, sealed)
            payload = {
                k: started[k] for k in ("state", "nonce", "verifier", "next", "redirect_uri")
            }
            payload[field] = "x" * 64
            forged = signer.seal(PURPOSE, payload, 600)
            set_cookie(http, TRANSACTION_COOKIE, forged, path="/login/oidc")
            refused = await callback(http, back)
            assert refused.status_code == 400
            assert expected in (await _audit(services, "login-failure", None))[0]["detail"]
        assert (await http.get("/")).status_code == 303


async def test_a_cancelled_sign_in(
    database_url: str, tmp_path: Path, provider: RunningProvider, idp: httpx.AsyncClient
) -> None:
    settings = oidc_settings(database_url, tmp_path / "data", provider)
    async with web_client(settings) as (_services, http):
        page = await _follow_at_provider(idp, await start(http))
        uid = re.search(r"/interaction/([^/\"]+)", page.text)
        assert uid is not None
        aborted = await idp.get(f"{provider.issuer}/interaction/{uid.group(1)}/abort")
        back = await _follow_at_provider(
            idp, urljoin(str(aborted.url), aborted.headers["location"])
        )
        url = (
            urljoin(str(back.url), back.headers["location"])
            if back.status_code in (302, 303)
            else str(back.url)
        )
        assert "error=access_denied" in url
        cancelled = await callback(http, url)
        assert cancelled.status_code == 400
        assert "The sign-in was cancelled." in cancelled.text


async def test_names_from_the_issuer_are_escaped_and_redirects_stay_here(
    database_url: str, tmp_path: Path, provider: RunningProvider, idp: httpx.AsyncClient
) -> None:
    settings = oidc_settings(database_url, tmp_path / "data", provider)
    async with web_client(settings) as (_services, http):
        back = await sign_in_at_provider(idp, await start(http, "//evil.example/"), "xss")
        signed = await callback(http, back)
        assert signed.headers["location"] == "/"
        home = await http.get("/")
        assert "<script>alert" not in home.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in home.text
        hostile = await http.get(
            "/login/oidc/callback", params={"error": "<script>x</script>", "state": "s"}
        )
        assert hostile.status_code == 400
        assert "<script>x" not in hostile.text


async def test_an_unreachable_issuer(database_url: str, tmp_path: Path) -> None:
    with running_provider(CLIENTS, ACCOUNTS, log_dir=tmp_path / "gone") as gone:
        pass  # started and stopped: its port answers nothing now
    settings = oidc_settings(database_url, tmp_path / "data", gone)
    async with web_client(settings) as (_services, http):
        refused = await http.get("/login/oidc")
        assert refused.status_code == 502
        assert "Test IdP cannot be reached now" in refused.text
        assert 'name="password"' in refused.text  # the password form is still offered
        set_cookie(http, COOKIE, "not-a-session")
        assert (await http.get("/")).status_code == 303

"""Signing in with a real browser (issue 22, point 1): the system Chromium, headless, driven by
Playwright, against a real ``lightbox serve``: a local user's password, and an OpenID Connect
issuer's sign-in (the test provider of tests/web/oidc). Screenshots go to
``.artifacts/screenshots``.
"""

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from app.services.logins import GENERIC_FAILURE
from tests.e2e.server import Server, add_admin, running_server, server_env
from tests.ports import free_port
from tests.web.oidc_provider import running_provider

ARGS = ("--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu")
PASSWORD = "correct horse battery"


@contextmanager
def browser_page(chromium: str, console: list[str]) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=list(ARGS), timeout=30_000
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.on("console", lambda m: console.append(f"{m.type}: {m.text[:300]}"))
            page.on("pageerror", lambda e: console.append(f"page error: {e}"))
            yield page
            context.close()
        finally:
            browser.close()


def _server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = server_env(tmp_path / "data", f"sqlite+aiosqlite:///{tmp_path / 'index.db'}", **extra)
    env.pop("LIGHTBOX_AUTH__ENABLED")  # the production default: on
    return env


@contextmanager
def lightbox(tmp_path: Path, port: int, **extra: str) -> Iterator[Server]:
    env = _server_env(tmp_path, **extra)
    add_admin({**env, "PATH": os.environ.get("PATH", "")}, PASSWORD)
    with running_server(env, port=port) as server:
        yield server


def _csp_violations(console: list[str]) -> list[str]:
    return [m for m in console if "Content Security Policy" in m or "Refused to" in m]


def test_local_user_signs_in_and_out(chromium: str, tmp_path: Path, screenshots: Path) -> None:
    console: list[str] = []
    port = free_port()
    with lightbox(tmp_path, port) as server, browser_page(chromium, console) as page:
        page.goto(f"{server.url}/")
        page.wait_for_url(f"{server.url}/login?next=/")
        # the name field has the focus; Tab goes through the form in order
        focused = "document.activeElement.id || document.activeElement.textContent.trim()"
        assert page.evaluate(focused) == "username"
        page.keyboard.press("Tab")
        assert page.evaluate(focused) == "password"
        page.keyboard.press("Tab")
        assert page.evaluate(focused) == "Sign in"
        page.screenshot(path=str(screenshots / "login.png"))

        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        alert = page.get_by_role("alert")
        assert alert.inner_text() == GENERIC_FAILURE
        page.screenshot(path=str(screenshots / "login-refused.png"))

        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{server.url}/")
        assert "Signed in as admin" in page.get_by_role("banner").inner_text()
        page.goto(f"{server.url}/about")  # what the session may do
        assert page.get_by_role("heading", name="Administer").is_visible()
        page.screenshot(path=str(screenshots / "home-admin.png"), full_page=True)
        # on a page without a form, the first Tab reaches the skip link, which leads to the main
        page.keyboard.press("Tab")
        assert page.evaluate(focused) == "Skip to main content"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"

        # the session works for the page's own calls to the DICOMweb root; writes need the
        # session's CSRF token, which the page has and a cross-site page would not
        calls = page.evaluate(
            """async () => {
                const csrf = document.querySelector('meta[name="csrf-token"]').content;
                const post = (headers) => fetch('/dicom-web/studies', {method: 'POST', headers:
                    {'Content-Type': 'application/dicom', ...headers}, body: 'not dicom'});
                return [
                    (await fetch('/dicom-web/studies')).status,
                    (await post({})).status,
                    (await post({'X-CSRF-Token': csrf})).status,
                ];
            }"""
        )
        assert calls == [204, 403, 400], calls  # 400: the body is no DICOM file, as it should

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{server.url}/login")
        page.goto(f"{server.url}/")
        page.wait_for_url(f"{server.url}/login?next=/")
    assert _csp_violations(console) == [], console


def test_sign_in_with_an_openid_connect_issuer(
    chromium: str, tmp_path: Path, screenshots: Path
) -> None:
    console: list[str] = []
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    clients = [
        {
            "client_id": "lightbox-web",
            "client_secret": "browser-test-secret",
            "redirect_uris": [f"{site}/login/oidc/callback"],
            "token_endpoint_auth_method": "client_secret_basic",
        }
    ]
    accounts = {"carol": {"name": "Carol Radiologist", "roles": ["read"]}}
    with running_provider(clients, accounts, log_dir=tmp_path / "oidc") as provider:
        oidc = {
            "LIGHTBOX_AUTH__OIDC_ISSUER": provider.issuer,
            "LIGHTBOX_AUTH__OIDC_ALLOW_HTTP": "true",
            "LIGHTBOX_AUTH__OIDC_CLIENT_ID": "lightbox-web",
            "LIGHTBOX_AUTH__OIDC_CLIENT_SECRET": "browser-test-secret",
            "LIGHTBOX_AUTH__OIDC_SCOPES": json.dumps(["openid", "profile", "roles"]),
            "LIGHTBOX_AUTH__OIDC_LOGIN_LABEL": "the test provider",
        }
        with lightbox(tmp_path, port, **oidc) as server, browser_page(chromium, console) as page:
            page.goto(f"{server.url}/")
            page.get_by_role("link", name="Sign in with the test provider").click()
            page.wait_for_url(f"{provider.issuer}/interaction/**")
            page.locator('input[name="login"]').fill("carol")
            page.locator('input[name="password"]').fill("anything")
            page.screenshot(path=str(screenshots / "oidc-provider-login.png"))
            page.locator('button[type="submit"]').click()
            page.get_by_role("button", name="Continue").click()  # the provider's consent
            page.wait_for_url(f"{server.url}/")
            banner = page.get_by_role("banner").inner_text()
            assert "Signed in as Carol Radiologist" in banner
            page.goto(f"{server.url}/about")  # what the session may do
            assert page.get_by_role("heading", name="Search and retrieve studies").is_visible()
            assert page.get_by_role("heading", name="Store instances").count() == 0  # read only
            page.screenshot(path=str(screenshots / "home-oidc.png"), full_page=True)
    assert _csp_violations(console) == [], console

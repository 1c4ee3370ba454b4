"""``/docs`` in headless Chromium with every request off this server refused (an offline
hospital network): Swagger UI loads its scripts from Lightbox, the OpenAPI document with an
admin token given in the URL's fragment; without a token the page says how to get in."""

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Route, sync_playwright

from tests.browser.site import launch
from tests.e2e.server import running_server, server_env


def test_swagger_ui_offline_with_an_admin_token(chromium: str, tmp_path: Path) -> None:
    # the pages do not depend on the index: the embedded SQLite default only
    env = server_env(tmp_path / "data", f"sqlite+aiosqlite:///{tmp_path / 'index.db'}")
    env.pop("LIGHTBOX_AUTH__ENABLED")  # access control on, the document not public
    with running_server(env) as server:
        token = subprocess.run(
            [
                sys.executable,
                "-m",
                "app",
                "token",
                "create",
                "--subject",
                "doc-reader",
                "--scope",
                "admin",
                "--ttl",
                "10m",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()[-1]
        own = urlsplit(server.url).netloc
        elsewhere: list[str] = []
        requested: list[str] = []

        def offline(route: Route) -> None:
            url = route.request.url
            if urlsplit(url).netloc != own:
                elsewhere.append(url)
                route.abort()
                return
            requested.append(url)
            route.continue_()

        with sync_playwright() as playwright:
            browser = launch(playwright, chromium)
            try:
                page = browser.new_context().new_page()
                page.route("**/*", offline)
                page.goto(f"{server.url}/docs#token={token}")
                page.wait_for_selector(".opblock", timeout=30_000)
                operations = page.locator(".opblock").count()
                assert operations >= 20, operations
                assert "store_instances" in page.content() or "Store instances" in page.content()
                # the token left the address bar (it stays in this tab's session storage)
                assert "token=" not in page.url

                anonymous = browser.new_context().new_page()
                anonymous.route("**/*", offline)
                anonymous.goto(f"{server.url}/docs")
                anonymous.wait_for_function(
                    "document.getElementById('hint').textContent.length > 0", timeout=15_000
                )
                assert "needs an admin token" in anonymous.inner_text("#hint")
            finally:
                browser.close()
        assert elsewhere == [], elsewhere
        assert any(u.endswith("/docs/assets/swagger-ui-bundle.js") for u in requested)
        assert any(u.endswith("/openapi.json") for u in requested)

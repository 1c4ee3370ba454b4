"""A running Lightbox for the page tests in a real browser: ``lightbox serve`` with access control
on, sessions minted for it, studies stored in it, and headless Chromium driven by Playwright.

A browser is signed in by giving it a session cookie signed with the server's own key (the
sign-in page is web-auth's and has tests of its own); the pages see the same cookie the sign-in
page sets. Screenshots go to ``.artifacts/screenshots/`` of the repository (git-ignored).
"""

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Dialog, Page, Playwright

from app.api.security.sessions import COOKIE
from app.auth.factory import build_mapping
from app.auth.keys import LocalSigningKey
from app.auth.principal import Permission
from app.auth.sessions import SessionPolicy, SessionSigner
from tests.auth.helpers import ALL, Tokens, auth_settings
from tests.e2e.server import Server, running_server, server_env
from tests.factories import multipart, stow_headers
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".artifacts" / "screenshots"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-dev-shm-usage",
)
#: the idp of the test sessions: not a local user's, so renewals look up no user directory
TEST_IDP = "https://sessions.tests.invalid"


@dataclass
class Site:
    """A running server and what a test needs to act on it."""

    server: Server
    env: dict[str, str]
    data_dir: Path
    database_url: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def settings(self) -> Any:
        return auth_settings(self.database_url, self.data_dir)

    def token(self, scopes: Sequence[str] = ALL, **kw: Any) -> str:
        """A bearer token of the server's embedded issuer."""
        return Tokens(self.settings).make(scopes, **kw)

    def headers(
        self, scopes: Sequence[str] = ("read", "write", "delete", "admin")
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(scopes)}"}

    def session(self, subject: str, permissions: Sequence[str]) -> str:
        """A session token for ``subject``, as the sign-in page would set it."""
        auth = self.settings.auth
        signer = SessionSigner(
            LocalSigningKey.load_or_create(self.data_dir)[0],
            issuer=auth.local_issuer,
            audience=auth.audience,
            mapping=build_mapping(auth),
            policy=SessionPolicy(auth.session_idle_seconds, auth.session_absolute_seconds),
        )
        token, _ = signer.issue(
            subject, [Permission(p) for p in permissions], name=subject, idp=TEST_IDP
        )
        return token

    def sign_in(self, context: BrowserContext, subject: str, permissions: Sequence[str]) -> None:
        """Give the browser context a session cookie for ``subject``."""
        context.add_cookies(
            [
                {
                    "name": COOKIE,
                    "value": self.session(subject, permissions),
                    "url": self.url,
                    "httpOnly": True,
                    "sameSite": "Lax",
                }
            ]
        )

    def store(self, files: Sequence[bytes], batch: int = 50) -> None:
        """STOW-RS the files (in batches), checking each batch is stored."""
        with httpx.Client(headers=self.headers(), timeout=120) as http:
            for start in range(0, len(files), batch):
                response = http.post(
                    f"{self.url}/dicom-web/studies",
                    content=multipart(list(files[start : start + batch])),
                    headers=stow_headers(),
                )
                assert response.status_code == 200, response.text[:500]

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        """The audit trail's events matching ``filters`` (``/api/audit``)."""
        response = httpx.get(
            f"{self.url}/api/audit",
            params={"limit": 1000, **filters},
            headers=self.headers(["admin"]),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def audit_until(self, timeout: float = 15, **filters: Any) -> list[dict[str, Any]]:
        """The audit events, once at least one matches (they are written in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.audit(**filters)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.25)


@contextmanager
def running_site(tmp_path: Path, **settings: str) -> Iterator[Site]:
    """``lightbox serve`` on SQLite in ``tmp_path``, access control on, ``settings`` added."""
    port = free_port()
    data_dir = tmp_path / "data"
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'index.db'}"
    env = server_env(
        data_dir,
        database_url,
        LIGHTBOX_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}/dicom-web",
        **settings,
    )
    env.pop("LIGHTBOX_AUTH__ENABLED")  # on, as in production
    with running_server(env, port=port) as server:
        yield Site(server, env, data_dir, database_url)


def launch(playwright: Playwright, chromium: str) -> Browser:
    return playwright.chromium.launch(
        executable_path=chromium, headless=True, args=list(CHROMIUM_ARGS), timeout=30_000
    )


def new_page(browser: Browser, site: Site | None = None, **sign_in: Any) -> Page:
    """A page in a fresh context (its own cookies), signed in when ``sign_in`` names a subject
    and permissions; console errors and page errors are kept on ``page.errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, service_workers="block")
    if site is not None and sign_in:
        site.sign_in(context, sign_in["subject"], sign_in["permissions"])
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    dialogs: list[str] = []  # an alert() would be a script that ran

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"console.error: {message.text[:300]}")

    def dialog(shown: Dialog) -> None:
        dialogs.append(shown.message)
        shown.dismiss()

    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("console", console)
    page.on("dialog", dialog)
    page.errors = errors  # type: ignore[attr-defined]
    page.dialogs = dialogs  # type: ignore[attr-defined]
    return page


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot as a test artifact; its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def canvas_digest(page: Page, selector: str = "#image") -> dict[str, Any]:
    """A canvas's pixels, summarised: a hash of them, distinct grey levels, the share lit."""
    stats: dict[str, Any] = page.evaluate(
        """(selector) => {
          const canvas = document.querySelector(selector);
          const ctx = canvas.getContext('2d');
          const {data} = ctx.getImageData(0, 0, canvas.width, canvas.height);
          let hash = 2166136261, lit = 0;
          const levels = new Set();
          for (let i = 0; i < data.length; i += 4) {
            hash = Math.imul(hash ^ data[i], 16777619) >>> 0;
            levels.add(data[i]);
            if (data[i] > 8) lit++;
          }
          return {hash, levels: levels.size, lit: lit / (data.length / 4),
                  width: canvas.width, height: canvas.height};
        }""",
        selector,
    )
    return stats


def json_of(page: Page, selector: str) -> Any:
    return json.loads(page.locator(selector).text_content() or "null")


__all__ = [
    "SCREENSHOTS",
    "Site",
    "canvas_digest",
    "json_of",
    "launch",
    "new_page",
    "running_site",
    "screenshot",
]

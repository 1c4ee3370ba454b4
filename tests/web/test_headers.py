"""Security headers of the pages (app.web.headers): a Content-Security-Policy without
'unsafe-inline', no inline script or style in any page, framing refused, no caching of pages,
and DICOMweb responses left alone."""

from html.parser import HTMLParser
from pathlib import Path

import pytest

from app.config import AuthSettings
from app.web.headers import CONTENT_SECURITY_POLICY
from tests.auth.helpers import Tokens, auth_settings
from tests.conftest import make_settings
from tests.web.helpers import signed_in, web_client


class _InlineFinder(HTMLParser):
    """What a page has that the CSP would block: inline scripts (JSON data blocks are data),
    styles, event handlers, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            # a data block (type="application/json", read with JSON.parse) is never run
            data = (values.get("type") or "").lower() == "application/json"
            self._in_script = not data
            if not values.get("src") and not data:
                self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style>")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"{tag} {name}=")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"{tag} {name}=javascript:")
            if name in ("hx-on", "hx-vars") or name.startswith("hx-on"):
                self.found.append(f"{tag} {name} (htmx eval)")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append("script content")


def inline_code(html: str) -> list[str]:
    finder = _InlineFinder()
    finder.feed(html)
    return finder.found


def test_policy_allows_nothing_inline() -> None:
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "unsafe-eval" not in CONTENT_SECURITY_POLICY
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"


@pytest.mark.parametrize("signed", [False, True])
async def test_pages_carry_the_headers_and_no_inline_code(
    database_url: str, tmp_path: Path, signed: bool
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        pages = ["/login", "/login?next=/x"]
        if signed:
            await signed_in(http, services)
            pages = ["/", *pages]
        missing = await http.get("/no-such-page", headers={"Accept": "text/html"})
        assert missing.status_code == 404
        for path in pages:
            response = await http.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["cross-origin-opener-policy"] == "same-origin"
            assert response.headers["cache-control"] == "no-store"
        for response in [missing, *[await http.get(p) for p in pages]]:
            assert response.headers["content-type"].startswith("text/html")
            assert inline_code(response.text) == [], response.url
            assert '<script src="/static/vendor/htmx/htmx.min.js?v=' in response.text


async def test_api_responses_are_left_alone(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (_services, http):
        search = await http.get("/dicom-web/studies", headers=Tokens(settings).headers(["read"]))
        assert search.status_code == 204
        assert "content-security-policy" not in search.headers
        assert "x-frame-options" not in search.headers
        refused = await http.get("/dicom-web/studies")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert "content-security-policy" not in refused.headers


async def test_pages_without_access_control(database_url: str, tmp_path: Path) -> None:
    """With access control off there is no one to sign in: the home page says so and offers
    everything; the sign-in page says there is nothing to sign in to."""
    settings = make_settings(database_url, tmp_path / "data", auth=AuthSettings(enabled=False))
    async with web_client(settings) as (_services, http):
        home = await http.get("/")
        assert home.status_code == 200
        assert "Access control is off" in home.text
        assert 'href="/upload"' in home.text  # every page of the site is offered
        assert 'href="/admin"' in home.text
        assert 'id="study-search"' in home.text
        assert "Store instances" in (await http.get("/about")).text
        assert "Sign out" not in home.text
        login = await http.get("/login")
        assert "nothing to sign in to" in login.text
        assert 'name="password"' not in login.text

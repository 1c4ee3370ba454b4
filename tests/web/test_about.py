"""The about page (the foundation's first screen, issue 22 point 1): what the signed-in user may
do, and how programs reach the same service."""

from pathlib import Path

import pytest

from app.web.templating import environment
from tests.auth.helpers import Tokens, auth_settings
from tests.web.helpers import signed_in, web_client

SECTIONS = {
    "read": "Search and retrieve studies",
    "write": "Store instances",
    "delete": "<h2>Delete</h2>",
    "admin": "Administer",
}


@pytest.mark.parametrize(
    "permissions", [["read"], ["read", "write"], ["read", "write", "delete", "admin"]]
)
async def test_about_shows_what_the_user_may_do(
    database_url: str, tmp_path: Path, permissions: list[str]
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await signed_in(http, services, subject="carol", permissions=permissions)
        home = await http.get("/about")
        assert home.status_code == 200
        for permission, section in SECTIONS.items():
            assert (section in home.text) == (permission in permissions), permission
        assert "http://t/dicom-web" in home.text
        assert "Signed in as <strong>carol</strong>" in home.text
        assert 'action="/logout"' in home.text
        # a read-only user sees no control that writes (nor the admin's links)
        if permissions == ["read"]:
            assert "STOW-RS" not in home.text
            assert "/api/audit" not in home.text


async def test_about_needs_a_session(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (_services, http):
        response = await http.get("/about")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/about"
        htmx = await http.get("/about", headers={"HX-Request": "true"})
        assert htmx.status_code == 401
        assert htmx.headers["hx-redirect"] == "/login?next=/about"
        # a program's bearer token shows the page too, without a sign-out button
        with_token = await http.get(
            "/about", headers=Tokens(settings).headers(["read"], subject="bot")
        )
        assert with_token.status_code == 200
        assert "Sign out" not in with_token.text


async def test_user_controlled_text_is_escaped(database_url: str, tmp_path: Path) -> None:
    """A name from an identity provider is the user's own text: shown escaped, never markup."""
    settings = auth_settings(database_url, tmp_path / "data")
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    async with web_client(settings) as (services, http):
        await signed_in(http, services, subject="dave", name=hostile, idp="https://idp.example")
        home = await http.get("/about")
        assert home.status_code == 200
        assert "<script>alert" not in home.text
        assert "<img src=x" not in home.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in home.text


async def test_a_hostile_host_header_is_escaped(database_url: str, tmp_path: Path) -> None:
    """The about page shows the DICOMweb URL built from the request's Host header: the client's
    own text, escaped like any other."""
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await signed_in(http, services, subject="erin")
        home = await http.get("/about", headers={"Host": 'x"><script>alert(1)</script>'})
        assert home.status_code == 200
        assert "<script>alert(1)" not in home.text
        assert "x&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;/dicom-web" in home.text


def test_every_template_is_autoescaped() -> None:
    """Autoescaping is on for every template, and no template opts out (``|safe``,
    ``autoescape false``, ``Markup``)."""
    env = environment()
    assert env.from_string("{{ v }}").render(v="<b>&</b>") == "&lt;b&gt;&amp;&lt;/b&gt;"
    templates = Path(__file__).resolve().parents[2] / "app" / "web" / "templates"
    names = env.list_templates()
    assert "base.html" in names
    for name in names:
        source = (templates / name).read_text()
        for escape_hatch in ("|safe", "| safe", "autoescape false", "Markup"):
            assert escape_hatch not in source, (name, escape_hatch)

"""``/admin``: the health of the index and the object store, the server's figures, and the other
administration pages (usage, users, DIMSE) answering whatever this server has of them."""

from pathlib import Path

from tests.auth.helpers import auth_settings
from tests.web.archive import text_of
from tests.web.helpers import ALL, signed_in, web_client
from tests.web.test_headers import inline_code


async def test_health_and_the_other_pages(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await signed_in(http, services, permissions=ALL)
        health = await http.get("/admin")
        assert health.status_code == 200
        text = text_of(health.text)
        assert "Everything answers." in text
        assert "index ok" in text
        assert "storage ok" in text
        assert ("SQLite" if "sqlite" in database_url else "PostgreSQL") in text
        assert "not installed" in text  # no OHIF build
        for path in ("/admin/usage", "/admin/users", "/admin/dimse", "/admin/shares"):
            page = await http.get(path)
            assert page.status_code == 200, path
            assert inline_code(page.text) == [], path
        assert "LIGHTBOX" in text_of((await http.get("/admin/dimse")).text)


async def test_a_failing_store_is_shown(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await signed_in(http, services, permissions=ALL)
        blobs = tmp_path / "data" / "blobs"
        blobs.rename(tmp_path / "moved")  # the store's directory is gone
        blobs.write_text("not a directory")
        try:
            page = await http.get("/admin/health")
        finally:
            blobs.unlink()
            (tmp_path / "moved").rename(blobs)
        text = text_of(page.text)
        assert "A back end does not answer." in text
        assert "storage failing" in text

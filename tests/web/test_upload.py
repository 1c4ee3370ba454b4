"""The upload page (issue 22, point 4): what the script is given, who may open it. (The upload
itself runs in Chromium: tests/browser/test_pages.py.)"""

import re
from pathlib import Path

from tests.auth.helpers import auth_settings
from tests.web.helpers import signed_in, web_client
from tests.web.test_headers import inline_code


async def test_the_page_gives_the_script_the_root_and_the_limits(
    database_url: str, tmp_path: Path
) -> None:
    settings = auth_settings(
        database_url, tmp_path / "data", limits={"max_instance_bytes": 1024**3}
    )
    async with web_client(settings) as (services, http):
        await signed_in(http, services, permissions=["read", "write"])
        page = await http.get("/upload")
        assert page.status_code == 200
        assert inline_code(page.text) == []
        assert 'data-dicomweb="/dicom-web"' in page.text
        assert f'data-max-file="{1024**3}"' in page.text
        assert "webkitdirectory" in page.text  # whole folders
        assert re.search(r'<meta name="csrf-token" content="[^"]+">', page.text)
        assert "/static/zip.js?v=" in page.text


async def test_a_reader_may_not_upload(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await signed_in(http, services, permissions=["read"])
        assert (await http.get("/upload")).status_code == 403
        assert 'href="/upload"' not in (await http.get("/")).text

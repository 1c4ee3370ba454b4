"""The pages' static files: vendored htmx pinned by hash, served with safe headers, packaged."""

import base64
import hashlib
import re
import tomllib
from pathlib import Path

import httpx
import pytest

from app.web.templating import STATIC_DIR, static_url
from tests.auth.helpers import auth_settings
from tests.web.helpers import web_client

ROOT = Path(__file__).resolve().parents[2]
HTMX = STATIC_DIR / "vendor" / "htmx"
#: the sha384 of htmx.org 2.0.11's dist/htmx.min.js (app/web/static/vendor/htmx/README.md)
HTMX_SHA384 = "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"
HTMX_VERSION = "2.0.11"


def test_vendored_htmx_is_the_pinned_release() -> None:
    data = (HTMX / "htmx.min.js").read_bytes()
    digest = "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()
    assert digest == HTMX_SHA384
    assert f'version:"{HTMX_VERSION}"'.encode() in data
    manifest = (HTMX / "README.md").read_text()
    assert HTMX_SHA384 in manifest
    assert f"| version | {HTMX_VERSION} |" in manifest
    licence = (HTMX / "LICENSE").read_text()
    assert "Zero-Clause BSD" in licence
    assert "Permission to use, copy, modify, and/or distribute this software" in licence


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """setuptools' package-data glob as a regex: ``**/`` any directories, ``*`` within one."""
    parts = re.split(r"(\*\*/|\*)", pattern)
    mapped = {"**/": "(?:[^/]+/)*", "*": "[^/]*"}
    return re.compile("".join(mapped.get(p, re.escape(p)) for p in parts))


def test_every_web_file_is_package_data() -> None:
    """``pip install`` (a wheel) carries the templates and static files: pyproject.toml's
    package-data globs match every file under app/web/templates and app/web/static."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = [_glob_regex(g) for g in config["tool"]["setuptools"]["package-data"]["app.web"]]
    web = ROOT / "app" / "web"
    files = [
        p.relative_to(web).as_posix()
        for folder in ("templates", "static")
        for p in (web / folder).rglob("*")
        if p.is_file()
    ]
    assert "static/vendor/htmx/htmx.min.js" in files
    assert "templates/base.html" in files
    for file in files:
        assert any(p.fullmatch(file) for p in patterns), file


async def test_static_files_are_served_with_safe_headers(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (_services, http):
        url = static_url("vendor/htmx/htmx.min.js")
        assert re.fullmatch(r"/static/vendor/htmx/htmx\.min\.js\?v=[0-9a-f]{12}", url)
        served = await http.get(url)  # no credentials: the sign-in page needs these
        assert served.status_code == 200
        assert served.content == (HTMX / "htmx.min.js").read_bytes()
        assert served.headers["content-type"].startswith("text/javascript")
        assert served.headers["x-content-type-options"] == "nosniff"
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
        unversioned = await http.get("/static/lightbox.css")
        assert unversioned.status_code == 200
        assert unversioned.headers["cache-control"] == "no-cache"
        again = await http.get(
            "/static/lightbox.css", headers={"If-None-Match": unversioned.headers["etag"]}
        )
        assert again.status_code == 304


@pytest.mark.parametrize(
    "path",
    ["/static/../config.py", "/static/%2e%2e/config.py", "/static/vendor/../../web/home.py"],
)
async def test_static_files_stay_in_their_directory(
    database_url: str, tmp_path: Path, path: str
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (_services, http):
        response = await http.get(httpx.URL(path))
        assert response.status_code == 404
        assert b"import" not in response.content

"""OHIF at ``/viewer/`` (issue 22, point 3): an installed build served for the prefix, its
inline start-up scripts moved to a file, its service worker left out, the generated app-config
naming our DICOMweb root and carrying the CSRF shim; nothing when none is installed.

The build here is a small stand-in with the shape of ``@ohif/app``'s ``dist`` (an index.html
with the same inline scripts and absolute paths, a bundle, a wasm file); the real one runs in
Chromium in tests/browser/test_ohif.py.
"""

import json
import re
from pathlib import Path

from app import ohif
from app.web.ohif import VIEWER_CSP
from tests.auth.helpers import auth_settings
from tests.web.archive import store_study
from tests.web.helpers import csrf_header, signed_in, web_client
from tests.web.test_headers import inline_code

INDEX = (
    '<!doctype html><html lang="en"><head><meta charset="UTF-8">'
    '<script>console.time("scriptToView"),window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json">'
    '<script rel="preload" as="script" src="/app-config.js"></script>'
    '<script rel="preload" as="script" type="module" src="/init-service-worker.js"></script>'
    '<script>function browserImportFunction(n){return import(n)}window.PUBLIC_URL="/"</script>'
    '<script defer src="/app.bundle.0123.js"></script>'
    '<link href="/app.bundle.css" rel="stylesheet"></head><body><div id="root"></div></body>'
    "</html>"
)


def install_stand_in(data_dir: Path, version: str = "9.9.9") -> Path:
    """A build laid out as ``lightbox viewer install`` lays one out."""
    dist = ohif.viewer_root(data_dir) / version / "dist"
    dist.mkdir(parents=True)
    (dist / "index.html").write_text(INDEX)
    (dist / "app.bundle.0123.js").write_text("console.log('ohif');\n")
    (dist / "app.bundle.css").write_text("body{}\n")
    (dist / "decoder.wasm").write_bytes(b"\0asm\1\0\0\0")
    (dist / "init-service-worker.js").write_text("navigator.serviceWorker.register('/sw.js')")
    (ohif.viewer_root(data_dir) / ohif.CURRENT).write_text(
        json.dumps({"version": version, "integrity": "sha512-test"})
    )
    return dist


async def test_an_installed_build_is_served_for_the_prefix(
    database_url: str, tmp_path: Path
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    install_stand_in(settings.data_dir)
    found = ohif.installed(settings.data_dir)
    assert found is not None
    assert found.version == "9.9.9"
    async with web_client(settings) as (services, http):
        study = await store_study(http, settings)
        # without a session: the sign-in page (OHIF's requests carry the session cookie)
        assert (await http.get("/viewer/viewer")).status_code == 303
        session = await signed_in(http, services, permissions=["read"])
        page = await http.get(f"/studies/{study}")
        assert f'href="/viewer/viewer?StudyInstanceUIDs={study}"' in page.text
        index = await http.get(f"/viewer/viewer?StudyInstanceUIDs={study}")
        assert index.status_code == 200
        assert index.headers["content-security-policy"] == VIEWER_CSP
        assert "unsafe-inline" not in VIEWER_CSP.split("style-src")[0]  # scripts: none inline
        assert inline_code(index.text) == []
        assert 'src="/viewer/lightbox-init.js"' in index.text
        assert 'src="/viewer/app-config.js"' in index.text
        assert 'src="/viewer/app.bundle.0123.js"' in index.text
        assert 'href="/viewer/manifest.json"' in index.text
        assert "init-service-worker" not in index.text
        init = await http.get("/viewer/lightbox-init.js")
        assert 'window.PUBLIC_URL = "/viewer/"' in init.text
        assert "browserImportFunction" in init.text
        config = await http.get("/viewer/app-config.js")
        assert config.headers["cache-control"] == "no-store"
        assert config.headers["cross-origin-resource-policy"] == "same-origin"
        body = json.loads(re.search(r"window.config = (\{.*?\});\n", config.text, re.S).group(1))  # type: ignore[union-attr]
        assert body["routerBasename"] == "/viewer"
        source = body["dataSources"][0]["configuration"]
        assert source["qidoRoot"] == source["wadoRoot"] == "http://t/dicom-web"
        csrf = csrf_header(services, session)["X-CSRF-Token"]
        assert json.dumps(csrf) in config.text  # the shim's token: the session's
        bundle = await http.get("/viewer/app.bundle.0123.js")
        assert bundle.status_code == 200
        assert bundle.headers["content-type"].startswith("text/javascript")
        wasm = await http.get("/viewer/decoder.wasm")
        assert wasm.headers["content-type"] == "application/wasm"
        assert (await http.get("/viewer/nothing.js")).status_code == 404
        assert (await http.get("/viewer/init-service-worker.js")).status_code == 200
        assert "serviceWorker" not in (await http.get("/viewer/init-service-worker.js")).text
        assert (await http.get("/viewer/%2e%2e/%2e%2e/current.json")).status_code == 404


async def test_without_a_build_there_is_no_viewer(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        study = await store_study(http, settings)
        await signed_in(http, services, permissions=["read"])
        assert "Open in OHIF" not in (await http.get(f"/studies/{study}")).text
        missing = await http.get("/viewer/viewer")
        assert missing.status_code == 404
        assert "lightbox viewer install" in missing.text

"""OHIF v3 in headless Chromium, served from another origin, against Lightbox with a bearer token.

Not part of ``make test`` (it needs the Debian ``chromium`` package and the npm ``@ohif/app``
build, neither of which the project installs). Run it by hand::

    apt-get install chromium && (cd /tmp && npm pack @ohif/app && tar xzf ohif-app-*.tgz)
    .venv/bin/python -m tests.browser.ohif_check /tmp/package/dist

It starts ``lightbox serve`` (access control on, CORS allowing the viewer's origin), stores a CT
image with an admin token, serves OHIF's ``dist/`` on a second port of 127.0.0.1 with an
``app-config.js`` pointing at Lightbox, opens the viewer in headless Chromium with
``?token=<read token>`` (OHIF then sends ``Authorization: Bearer`` on every request), and
checks that (1) Lightbox's audit trail holds successful metadata and frames requests of that
token's subject, and (2) the screenshot shows a non-blank image in the viewport.
"""

# ruff: noqa: T201 (a command-line check that reports on stdout)
import asyncio
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageStat
from pydicom import dcmread
from pydicom.data import get_testdata_file

from app.config import Settings
from app.services.audit import AuditFilter
from app.services.container import open_services
from tests.e2e.server import free_port, running_server, server_env


def app_config(lightbox: str) -> str:
    config = {
        "routerBasename": "/",
        "showStudyList": True,
        "extensions": [],
        "modes": [],
        "defaultDataSourceName": "lightbox",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "lightbox",
                "configuration": {
                    "friendlyName": "Lightbox",
                    "name": "lightbox",
                    "wadoUriRoot": f"{lightbox}/dicom-web",
                    "qidoRoot": f"{lightbox}/dicom-web",
                    "wadoRoot": f"{lightbox}/dicom-web",
                    "qidoSupportsIncludeField": False,
                    "imageRendering": "wadors",
                    "thumbnailRendering": "wadors",
                    "enableStudyLazyLoad": False,
                    "supportsFuzzyMatching": False,
                    "supportsWildcard": True,
                    "omitQuotationForMultipartRequest": True,
                    "bulkDataURI": {"enabled": True},
                },
            }
        ],
    }
    return f"window.config = {json.dumps(config)};\n"


@contextmanager
def serve_viewer(dist: Path, config: str, port: int) -> Iterator[str]:
    """OHIF's dist/ with our app-config.js; unknown paths get index.html (a single-page app)."""

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/app-config.js":
                body = config.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/javascript")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if not (dist / path.lstrip("/")).is_file():
                self.path = "/index.html"
            super().do_GET()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(Handler, directory=str(dist))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def token(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", "token", "create", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().splitlines()[-1]


async def audit_rows(env: dict[str, str], subject: str) -> list[dict[str, Any]]:
    settings = Settings(
        data_dir=Path(env["LIGHTBOX_DATA_DIR"]), database_url=env["LIGHTBOX_DATABASE_URL"]
    )
    async with open_services(settings) as services:
        items, _ = await services.audit.search(AuditFilter(actor=subject), limit=1000, offset=0)
    return items


async def browse(chromium: str, url: str, shot: Path, work: Path) -> list[str]:
    """Open ``url`` in headless Chromium, wait for the viewer to settle, take a screenshot.

    Driven over the DevTools protocol (a real wait, not virtual time, so that OHIF's decoding
    web workers run); returns the browser's console and log messages.
    """
    import base64

    import websockets

    port = free_port()
    browser = await asyncio.create_subprocess_exec(
        *[
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-background-networking",
            "--disable-gpu",
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--window-size=1280,900",
            f"--remote-debugging-port={port}",
            f"--user-data-dir={work / 'chromium'}",
            "about:blank",
        ],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    messages: list[str] = []
    try:
        targets: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=1) as client:
            for _ in range(100):
                try:
                    targets = (await client.get(f"http://127.0.0.1:{port}/json")).json()
                    if any(t.get("type") == "page" for t in targets):
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        page = next(t for t in targets if t.get("type") == "page")
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=2**26) as ws:
            counter = 0

            async def call(method: str, **params: Any) -> dict[str, Any]:
                nonlocal counter
                counter += 1
                await ws.send(json.dumps({"id": counter, "method": method, "params": params}))
                while True:
                    reply = json.loads(await ws.recv())
                    if reply.get("id") == counter:
                        result: dict[str, Any] = reply.get("result", {})
                        return result
                    remember(reply)

            def remember(event: dict[str, Any]) -> None:
                if event.get("method") == "Runtime.consoleAPICalled":
                    args = event["params"].get("args", [])
                    text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                    messages.append(f"console.{event['params'].get('type')}: {text[:300]}")
                elif event.get("method") == "Log.entryAdded":
                    entry = event["params"]["entry"]
                    messages.append(f"log.{entry.get('level')}: {entry.get('text', '')[:300]}")

            await call("Runtime.enable")
            await call("Log.enable")
            await call("Page.enable")
            await call("Page.navigate", url=url)
            deadline = asyncio.get_running_loop().time() + 40
            while asyncio.get_running_loop().time() < deadline:
                with suppress(TimeoutError):
                    remember(json.loads(await asyncio.wait_for(ws.recv(), timeout=1)))
            png = base64.b64decode((await call("Page.captureScreenshot"))["data"])
            await asyncio.to_thread(shot.write_bytes, png)
    finally:
        browser.terminate()
        await asyncio.wait_for(browser.wait(), timeout=20)
    return messages


def main(dist: Path) -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not (dist / "index.html").is_file():
        print("needs the chromium package and an @ohif/app dist/ directory")
        return 2
    work = Path(tempfile.mkdtemp(prefix="lightbox-ohif-"))
    data_dir = work / "data"
    lightbox_port, viewer_port = free_port(), free_port()
    viewer_origin = f"http://127.0.0.1:{viewer_port}"
    env = server_env(
        data_dir,
        f"sqlite+aiosqlite:///{work / 'index.db'}",
        LIGHTBOX_PUBLIC_BASE_URL=f"http://127.0.0.1:{lightbox_port}/dicom-web",
        LIGHTBOX_CORS__ALLOW_ORIGINS=json.dumps([viewer_origin]),
    )
    env.pop("LIGHTBOX_AUTH__ENABLED")  # access control on, as in production
    ct_path = Path(str(get_testdata_file("CT_small.dcm")))
    ct = dcmread(ct_path)
    with running_server(env, port=lightbox_port) as server:
        admin = token(env, "--subject", "admin", "--scope", "write", "--ttl", "10m")
        with ct_path.open("rb") as f:
            stored = httpx.post(
                f"{server.dicomweb}/studies",
                content=f.read(),
                headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/dicom"},
            )
        print("stored:", stored.status_code)
        reader = token(env, "--subject", "ohif-user", "--scope", "read", "--ttl", "10m")
        with serve_viewer(dist, app_config(server.url), viewer_port) as viewer:
            url = f"{viewer}/viewer?StudyInstanceUIDs={ct.StudyInstanceUID}&token={reader}"
            shot = work / "ohif.png"
            console = asyncio.run(browse(chromium, url, shot, work))
        for line in console[-20:]:
            print("browser:", line)
        rows = asyncio.run(audit_rows(env, "ohif-user"))
    actions = sorted({(r["action"], r["status"]) for r in rows})
    print("Lightbox audit of the viewer's requests:", actions)
    image = Image.open(shot).convert("L")
    width, height = image.size
    viewport = image.crop((width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    stddev = ImageStat.Stat(viewport).stddev[0]
    print(f"screenshot {shot}: viewport stddev {stddev:.1f}")
    fetched_pixels = any(r["action"] == "frames" and r["status"] == 200 for r in rows)
    ok = fetched_pixels and stddev > 5 and all(r["status"] not in (401, 403) for r in rows)
    print("OK: OHIF showed the image with a bearer token" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

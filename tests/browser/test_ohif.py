"""OHIF v3 in headless Chromium: served from another origin against Lightbox with a bearer token
(issue 6), and installed at /viewer/ on Lightbox's own origin with the session (issue 22).

Issue 6, point 4 (GEN-09): a real ``lightbox serve`` (access control on, CORS allowing the
viewer's origin) holds a CT study; the pinned ``@ohif/app`` build is served from a second port of
127.0.0.1 (another origin) with an ``app-config.js`` naming Lightbox as its DICOMweb source; the
system Chromium, driven by Playwright, opens the study with ``?token=<share token>`` (OHIF then
sends ``Authorization: Bearer`` on every request, after a CORS preflight). The test passes when
the viewport canvas shows an image (many grey levels over much of its area), the browser's
requests to Lightbox all carried the token and succeeded cross-origin, and Lightbox's own audit
trail holds that token's successful metadata and frames reads.
"""

import base64
import functools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Response, sync_playwright
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.browser.site import launch, new_page, running_site, screenshot
from tests.e2e.server import running_server, server_env
from tests.factories import make_ct_series, make_sr_dataset, multipart, stow_headers, to_bytes
from tests.ports import free_port

VIEWER_SUBJECT = "ohif-viewer"
SHOWN_TIMEOUT_S = 45  # from the page's load to an image in the viewport
AUDIT_TIMEOUT_S = 15  # audit rows are written in batches off the request path

# Grey-level statistics of every 2D viewport canvas that cornerstone draws the image into (the
# overlays, such as patient name and window level, are HTML above it, not canvas pixels).
CANVAS_STATS = """() => {
  const stats = [];
  for (const canvas of document.querySelectorAll('canvas.cornerstone-canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const ctx = canvas.getContext('2d', {willReadFrequently: true});
    if (!ctx) continue;
    const {data} = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const levels = new Set();
    let lit = 0;
    for (let i = 0; i < data.length; i += 4) {
      const grey = (data[i] + data[i + 1] + data[i + 2]) / 3 | 0;
      levels.add(grey);
      if (grey > 8) lit += 1;
    }
    stats.push({
      width: canvas.width, height: canvas.height, levels: levels.size, lit: lit / (data.length / 4)
    });
  }
  return stats;
}"""
MIN_LEVELS = 32  # a CT slice under any sensible window; text or a blank canvas has a handful
MIN_LIT = 0.05  # share of the canvas brighter than background


def _shown(stats: list[dict[str, Any]]) -> bool:
    return any(s["levels"] >= MIN_LEVELS and s["lit"] >= MIN_LIT for s in stats)


def app_config(lightbox: str) -> str:
    """OHIF's ``app-config.js``: Lightbox as the only (DICOMweb) data source."""
    dicomweb = f"{lightbox}/dicom-web"
    config = {
        "routerBasename": "/",
        "showStudyList": True,
        "extensions": [],
        "modes": [],
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "investigationalUseDialog": {"option": "never"},
        "defaultDataSourceName": "lightbox",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "lightbox",
                "configuration": {
                    "friendlyName": "Lightbox",
                    "name": "lightbox",
                    "wadoUriRoot": dicomweb,
                    "qidoRoot": dicomweb,
                    "wadoRoot": dicomweb,
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
                self.send_header("Content-Type", "text/javascript")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if not (dist / path.lstrip("/")).is_file():
                self.path = "/index.html"
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # quiet: the test reports what matters

    server = ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(Handler, directory=str(dist))
    )
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def cli_token(env: dict[str, str], *args: str) -> str:
    """``lightbox token create ...`` on the server's data directory (the embedded issuer)."""
    done = subprocess.run(
        [sys.executable, "-m", "app", "token", "create", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().splitlines()[-1]


@dataclass
class Exchange:
    """One request of the browser to Lightbox, as the browser saw it."""

    method: str
    url: str
    status: int
    authorization: str | None
    allow_origin: str | None


@dataclass
class Browsed:
    exchanges: list[Exchange] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    canvases: list[dict[str, Any]] = field(default_factory=list)
    shown_after_s: float | None = None

    def report(self) -> str:
        lines = [f"canvases: {self.canvases}"]
        lines += [f"{e.status} {e.method} {e.url}" for e in self.exchanges[-15:]]
        lines += [f"browser {m}" for m in self.console[-25:]]
        return "\n".join(lines)


def browse(chromium: str, url: str, lightbox: str, screenshot: Path) -> Browsed:
    """Open ``url`` in headless Chromium and wait (bounded) until the viewport shows an image."""
    seen = Browsed()
    responses: list[Response] = []
    with sync_playwright() as playwright:
        browser = launch(playwright, chromium)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 900}, service_workers="block"
            )
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.on("console", lambda m: seen.console.append(f"console.{m.type}: {m.text[:300]}"))
            page.on("pageerror", lambda e: seen.console.append(f"page error: {e}"))
            page.on(
                "requestfailed",
                lambda r: seen.console.append(f"request failed: {r.url[:200]} {r.failure}"),
            )

            def keep(response: Response) -> None:
                if response.url.startswith(lightbox):
                    responses.append(response)

            page.on("response", keep)
            page.goto(url, wait_until="load")
            started = time.monotonic()
            try:
                page.wait_for_function(
                    f"() => ({CANVAS_STATS})().some("
                    f"s => s.levels >= {MIN_LEVELS} && s.lit >= {MIN_LIT})",
                    timeout=SHOWN_TIMEOUT_S * 1000,
                    polling=500,
                )
                seen.shown_after_s = time.monotonic() - started
            except PlaywrightError as exc:  # a timeout: reported by the assertions below
                seen.console.append(f"waiting for the image: {str(exc)[:300]}")
            seen.canvases = page.evaluate(CANVAS_STATS)
            page.screenshot(path=str(screenshot))
            for response in responses:
                request = response.request
                seen.exchanges.append(
                    Exchange(
                        request.method,
                        response.url,
                        response.status,
                        request.all_headers().get("authorization"),
                        response.all_headers().get("access-control-allow-origin"),
                    )
                )
            context.close()
        finally:
            browser.close()
    return seen


def audit_events(server_url: str, admin: str, actor: str) -> list[dict[str, Any]]:
    """Lightbox's audit trail of ``actor``, once its batched writer has written the frames."""
    deadline = time.monotonic() + AUDIT_TIMEOUT_S
    while True:
        page = httpx.get(
            f"{server_url}/api/audit",
            params={"actor": actor, "limit": 1000},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=10,
        )
        assert page.status_code == 200, page.text
        items: list[dict[str, Any]] = page.json()["items"]
        if any(e["action"] == "frames" for e in items) or time.monotonic() > deadline:
            return items
        time.sleep(0.25)


def test_ohif_shows_a_lightbox_study_from_another_origin_with_a_token(
    chromium: str, ohif_viewer: Path, tmp_path: Path
) -> None:
    ct_file = Path(str(get_testdata_file("CT_small.dcm")))
    ct = dcmread(ct_file, stop_before_pixels=True)
    study, series, sop = ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID
    lightbox_port, viewer_port = free_port(), free_port()
    viewer_origin = f"http://127.0.0.1:{viewer_port}"
    env = server_env(
        tmp_path / "data",
        f"sqlite+aiosqlite:///{tmp_path / 'index.db'}",
        LIGHTBOX_PUBLIC_BASE_URL=f"http://127.0.0.1:{lightbox_port}/dicom-web",
        LIGHTBOX_CORS__ALLOW_ORIGINS=json.dumps([viewer_origin]),
    )
    env.pop("LIGHTBOX_AUTH__ENABLED")  # access control on, as in production

    with running_server(env, port=lightbox_port) as server:
        admin = cli_token(
            env, "--subject", "test-admin", "--scope", "write", "--scope", "admin", "--ttl", "10m"
        )
        stored = httpx.post(
            f"{server.dicomweb}/studies",
            content=multipart([ct_file.read_bytes()]),
            headers={**stow_headers(), "Authorization": f"Bearer {admin}"},
            timeout=30,
        )
        assert stored.status_code == 200, stored.text
        # a share token: read, for this study only (what a link sent to a colleague carries)
        share = cli_token(
            env, "--subject", VIEWER_SUBJECT, "--scope", "read", "--study", study, "--ttl", "10m"
        )

        # the preflight the browser sends before a cross-origin request with Authorization
        frame = f"{server.dicomweb}/studies/{study}/series/{series}/instances/{sop}/frames/1"
        preflight = httpx.options(
            frame,
            headers={
                "Origin": viewer_origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, accept",
            },
            timeout=10,
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == viewer_origin
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        stranger = httpx.options(
            frame,
            headers={
                "Origin": f"http://127.0.0.1:{free_port()}",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
            timeout=10,
        )
        assert "access-control-allow-origin" not in stranger.headers
        # and without a token, the viewer's origin is refused like any other client
        assert httpx.get(frame, headers={"Origin": viewer_origin}, timeout=10).status_code == 401

        with serve_viewer(ohif_viewer, app_config(server.url), viewer_port) as viewer:
            url = f"{viewer}/viewer?StudyInstanceUIDs={study}&token={share}"
            seen = browse(chromium, url, server.url, tmp_path / "ohif.png")
        events = audit_events(server.url, admin, VIEWER_SUBJECT)

    report = seen.report() + f"\nscreenshot: {tmp_path / 'ohif.png'}"
    assert seen.shown_after_s is not None, f"no image in the viewport\n{report}"
    assert _shown(seen.canvases), report

    # the browser's requests: each carried the token and was let through cross-origin (a
    # preflight, where the browser reports one, carries no token but must be allowed too)
    requests = [e for e in seen.exchanges if e.method != "OPTIONS"]
    assert requests, report
    for exchange in seen.exchanges:
        assert exchange.allow_origin == viewer_origin, (exchange, report)
        assert exchange.status < 400, (exchange, report)
    for exchange in requests:
        assert exchange.authorization == f"Bearer {share}", (exchange, report)
    fetched = {(e.method, e.url.split("?")[0].split("/")[-2]) for e in requests}
    assert ("GET", "frames") in fetched, report

    # Lightbox's own record of the viewer's reads: metadata and frames, all allowed
    actions = {(e["action"], e["status"]) for e in events}
    assert ("metadata", 200) in actions, actions
    assert ("frames", 200) in actions, actions
    assert all(e["outcome"] == "success" for e in events), events
    assert all(e["study_uid"] in (None, study) for e in events), events


def test_ohif_installed_at_viewer_opens_from_the_study_page(
    chromium: str, ohif_viewer: Path, tmp_path: Path
) -> None:
    """``lightbox viewer install`` puts the pinned build under the data directory; the study
    page's "Open in OHIF" opens it at /viewer/ on the same origin, signed in by the session
    cookie alone (no token anywhere); what the viewer stores goes through STOW-RS with the
    session (the app-config's CSRF shim), and a structured report stored so shows on the study
    page as text."""
    del ohif_viewer  # fetched into the repository's cache: npm's own cache then serves install
    with running_site(tmp_path) as site:
        installed = subprocess.run(
            [sys.executable, "-m", "app", "viewer", "install"],
            env=site.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert "installed @ohif/app@" in installed.stdout
        study = generate_uid()
        patient = {"PatientName": "Ohif^Olivia", "PatientID": "OH-1"}
        site.store(make_ct_series(24, rows=256, columns=256, StudyInstanceUID=study, **patient))
        report = to_bytes(
            make_sr_dataset(
                "Saved in the viewer", ["Nodule 4 mm."], StudyInstanceUID=study, **patient
            )
        )
        with sync_playwright() as playwright:
            browser = launch(playwright, chromium)
            try:
                page = new_page(browser, site, subject="olga", permissions=["read", "write"])
                page.set_default_timeout(60_000)
                requests: list[tuple[str, str | None]] = []
                page.on(
                    "request",
                    lambda r: (
                        requests.append((r.url, r.headers.get("authorization")))
                        if "/dicom-web/" in r.url
                        else None
                    ),
                )
                page.goto(f"{site.url}/studies/{study}")
                with page.expect_navigation():
                    page.click("#open-ohif")
                assert page.url.startswith(f"{site.url}/viewer/viewer?StudyInstanceUIDs={study}")
                # the canvases as they were when an image showed (OHIF redraws them at will)
                shown = page.wait_for_function(
                    f"() => {{ const stats = ({CANVAS_STATS})(); return stats.some("
                    f"s => s.levels >= {MIN_LEVELS} && s.lit >= {MIN_LIT}) ? stats : null; }}",
                    timeout=SHOWN_TIMEOUT_S * 1000,
                    polling=500,
                )
                assert _shown(shown.json_value())
                screenshot(page, "ohif-viewer")
                # its requests: same origin, the session cookie, no token
                assert requests
                assert all(url.startswith(site.url) and auth is None for url, auth in requests)
                # a save from the viewer: a STOW-RS POST from its page (as OHIF's DICOMweb
                # client sends one), with the session cookie and, through the shim, the CSRF token
                status = page.evaluate(
                    """async (b64) => {
                      const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                      const boundary = 'ohif-save';
                      const head = `--${boundary}\\r\\nContent-Type: application/dicom\\r\\n\\r\\n`;
                      const body = new Blob([head, bytes, `\\r\\n--${boundary}--\\r\\n`]);
                      return await new Promise((resolve) => {
                        const xhr = new XMLHttpRequest();
                        xhr.open('POST', '/dicom-web/studies');
                        xhr.setRequestHeader('Content-Type',
                          `multipart/related; type="application/dicom"; boundary=${boundary}`);
                        xhr.onload = () => resolve(xhr.status);
                        xhr.onerror = () => resolve(0);
                        xhr.send(body);
                      });
                    }""",
                    base64.b64encode(report).decode(),
                )
                assert status == 200
                page.goto(f"{site.url}/studies/{study}")
                page.wait_for_selector(".report-body")
                assert "Nodule 4 mm." in page.locator(".report-body").inner_text()
                assert "Saved in the viewer" in page.locator(".report-body").inner_text()
                screenshot(page, "ohif-report-on-study-page")
            finally:
                browser.close()

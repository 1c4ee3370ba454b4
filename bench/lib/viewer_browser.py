"""The built-in viewer in Chromium (issue 22, performance), measured with the Performance API:

- first image: from the click on "Open in viewer" on the study page to the first image drawn
  in the viewer (``performance.timeOrigin + mark("lightbox:first-image")`` against the click's
  ``Date.now()``), target <= 500 ms for a 512x512 CT series;
- scrolling once prefetched: the series stepped through slice by slice, one step per
  animation frame (``go(i)`` then ``requestAnimationFrame``), images drawn per second, target
  >= 20 for a 200-slice series; and the same with key presses (ArrowDown) sent by Playwright,
  which adds its own round trip per key.

A fresh ``lightbox serve`` (SQLite, a temporary directory) gets the series by STOW-RS; each
round opens the study page in a fresh browser context (cold cache), so the first-image time
includes the page, the script, the series metadata and the first frame.

    .venv/bin/python bench/run.py web viewer --slices 200 --size 512 --rounds 5
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from lightbox_serve import serving, session_signer
from playwright.sync_api import sync_playwright
from pydicom.uid import generate_uid

from app.api.security.sessions import COOKIE
from app.auth.factory import build_issuer
from app.auth.principal import Permission
from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.factories import make_ct_series, multipart, stow_headers  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking",
                 "--disable-gpu", "--disable-dev-shm-usage"]  # fmt: skip


def store(base: str, data_dir: Path, files: list[bytes]) -> None:
    settings = Settings(data_dir=data_dir)
    token = build_issuer(settings).issue("bench", ["write"], 600)
    with httpx.Client(timeout=300, headers={"Authorization": f"Bearer {token}"}) as http:
        for start in range(0, len(files), 20):
            response = http.post(
                f"{base}/dicom-web/studies",
                content=multipart(files[start : start + 20]),
                headers=stow_headers(),
            )
            response.raise_for_status()


def round_trip(browser: Any, base: str, cookie: str, study: str, slices: int) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": COOKIE, "value": cookie, "url": base}])
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{base}/studies/{study}")
    page.wait_for_load_state("load")
    # the click is the page's own (no Playwright round trip between the time and the click)
    with page.expect_navigation():
        clicked = page.evaluate(
            "() => { const t = Date.now(); document.getElementById('open-viewer').click(); "
            "return t; }"
        )
    page.wait_for_function(
        "() => window.lightboxViewer && window.lightboxViewer.stats.firstImageAt"
    )
    mark = page.evaluate("() => performance.getEntriesByName('lightbox:first-image')[0].startTime")
    first = page.evaluate("() => performance.timeOrigin") + mark
    page.wait_for_function(
        "() => window.lightboxViewer.loaded === window.lightboxViewer.count", timeout=300_000
    )
    loaded = page.evaluate("() => Date.now()")
    frames = page.evaluate(
        """async (n) => {
          const v = window.lightboxViewer;
          const drawn = v.stats.drawn;
          const t0 = performance.now();
          for (let i = 0; i < n; i++) {
            v.go(i);
            await new Promise(r => requestAnimationFrame(r));
          }
          await new Promise(r => requestAnimationFrame(r));
          return {seconds: (performance.now() - t0) / 1000, drawn: v.stats.drawn - drawn};
        }""",
        slices,
    )
    capacity = page.evaluate(
        """(n) => {
          const v = window.lightboxViewer;
          const t0 = performance.now();
          for (let i = 0; i < n; i++) v.show(i);
          return n / ((performance.now() - t0) / 1000);
        }""",
        slices,
    )
    page.evaluate("() => window.lightboxViewer.go(0)")
    page.focus("#viewport")
    drawn = page.evaluate("() => window.lightboxViewer.stats.drawn")
    started = time.perf_counter()
    for _ in range(slices - 1):
        page.keyboard.press("ArrowDown")
    page.wait_for_function(f"() => window.lightboxViewer.stats.lastDrawnIndex === {slices - 1}")
    keys = time.perf_counter() - started
    keys_drawn = page.evaluate("() => window.lightboxViewer.stats.drawn") - drawn
    timings = page.evaluate(
        """() => performance.getEntriesByType('resource').filter(
             e => e.name.includes('/metadata') || e.name.includes('/frames/')).slice(0, 2)
             .map(e => [e.name.split('/').slice(-1)[0], e.startTime, e.responseEnd])"""
    )
    navigation = page.evaluate(
        "() => { const n = performance.getEntriesByType('navigation')[0];"
        " return [n.responseStart, n.responseEnd, n.domContentLoadedEventEnd]; }"
    )
    context.close()
    return {
        "first_image_ms": first - clicked,
        "click_to_navigation_ms": first - clicked - mark,
        "page_response_ms": navigation[0],
        "page_dom_ready_ms": navigation[2],
        "metadata_done_ms": timings[0][2] if timings else 0.0,
        "first_frame_done_ms": timings[1][2] if len(timings) > 1 else 0.0,
        "all_loaded_ms": loaded - clicked,
        "scroll_images_per_s": frames["drawn"] / frames["seconds"],
        "draw_capacity_per_s": capacity,
        "keys_images_per_s": keys_drawn / keys,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--size", type=int, default=512, help="rows and columns")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="lb-viewer-"))
    rounds: list[dict[str, float]] = []
    with serving(data_dir) as base:
        study = generate_uid()
        files = make_ct_series(
            args.slices, rows=args.size, columns=args.size, StudyInstanceUID=study
        )
        store(base, data_dir, files)
        cookie, _ = session_signer(data_dir).issue(
            "bench", [Permission.READ], name="bench", idp="https://bench.invalid"
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS
            )
            try:
                for _ in range(args.rounds):
                    rounds.append(round_trip(browser, base, cookie, study, args.slices))
            finally:
                browser.close()
    print(f"built-in viewer: {args.slices} slices of {args.size}x{args.size}, {args.rounds} rounds")
    summary: dict[str, Any] = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        summary[key] = {
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
        }
        print(
            f"  {key:22s} median {summary[key]['median']:8.1f}  "
            f"min {summary[key]['min']:8.1f}  max {summary[key]['max']:8.1f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": rounds, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()

"""The pages in a real browser (issue 22): headless Chromium (the system's, driven by
Playwright) against one ``lightbox serve`` for the module.

Searching and opening a study; the built-in viewer scrolling a 100-slice CT series (the canvas's
pixels change), a window preset, the overlay as text; uploading a folder (progress, a result per
file, a network failure retried, a 2 GB file refused without being read); a share link made,
used in a fresh browser context with no account, and revoked; an administrator filtering the
audit trail. Screenshots: ``.artifacts/screenshots/``.
"""

import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, sync_playwright
from pydicom.uid import generate_uid

from tests.browser.site import Site, canvas_digest, launch, new_page, running_site, screenshot
from tests.factories import make_ct_series, make_instance, make_sr_dataset, to_bytes

ADMIN = ["read", "write", "delete", "admin"]
HOSTILE_NAME = "<script>window.alert(1)</script>^Eve"
#: markup with an event handler (a PN value cannot hold '=': it separates its groups)
HOSTILE_DESCRIPTION = "CT <img src=x onerror=window.__pwned=1>"
SLICES = 100
#: the server's per-file limit here (the 2 GB file must be refused by it)
MAX_FILE = 1024**3


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("pages")
    with running_site(tmp, LIGHTBOX_LIMITS__MAX_INSTANCE_BYTES=str(MAX_FILE)) as running:
        yield running


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = launch(playwright, chromium)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def ct_study(site: Site) -> str:
    """A 100-slice CT series (and an SR) of a patient whose name holds markup."""
    study = generate_uid()
    patient = {"PatientName": HOSTILE_NAME, "PatientID": "BR-1"}
    files = make_ct_series(
        SLICES,
        rows=256,
        columns=256,
        StudyInstanceUID=study,
        StudyDescription=HOSTILE_DESCRIPTION,
        AccessionNumber="BR-ACC",
        **patient,
    )
    report = make_sr_dataset("Browser report", ["Lungs clear."], StudyInstanceUID=study, **patient)
    site.store([*files, to_bytes(report)])
    return study


def test_search_open_and_view_a_series(site: Site, browser: Browser, ct_study: str) -> None:
    page = new_page(browser, site, subject="rita", permissions=["read"])
    page.goto(f"{site.url}/")
    page.fill("#patient_name", "eve")
    page.press("#patient_name", "Enter")
    page.wait_for_selector("#results .study-link")
    assert page.locator("#result-count").inner_text().startswith("Studies 1")
    # keyboard navigation: j moves to the first result, Enter opens it
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.classList.contains('study-link')")
    screenshot(page, "study-list")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith(f"/studies/{ct_study}")
    assert page.locator("h1").inner_text() == "<script>window.alert(1)</script>, Eve"
    page.wait_for_selector(".report-body")  # the SR's text, loaded into the page
    assert "Lungs clear." in page.locator(".report-body").inner_text()
    screenshot(page, "study-page")

    page.click("#open-viewer")
    page.wait_for_function(
        "() => window.lightboxViewer && window.lightboxViewer.stats.firstImageAt"
    )
    viewer = "window.lightboxViewer"
    assert page.evaluate(f"{viewer}.count") == SLICES
    page.wait_for_function(f"() => {viewer}.loaded === {viewer}.count", timeout=60_000)
    # the overlay shows the name and description as text: no element made of them, none ran
    names = page.locator("#overlay-tl")
    assert names.inner_text().splitlines()[0] == "<script>window.alert(1)</script>, Eve"
    assert page.locator("#overlay-tr").inner_text().splitlines()[0] == HOSTILE_DESCRIPTION
    assert page.locator(".overlay script, .overlay img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.dialogs == []  # type: ignore[attr-defined]
    first = canvas_digest(page)
    assert first["levels"] > 2
    assert first["lit"] > 0.02
    # scroll: the wheel and the keys move through the slices; the pixels change
    page.hover("#viewport")
    seen = {first["hash"]}
    for _ in range(5):
        page.mouse.wheel(0, 120)
        page.wait_for_timeout(50)
    page.wait_for_function(f"() => {viewer}.stats.lastDrawnIndex === {viewer}.index")
    assert page.evaluate(f"{viewer}.index") > 0
    seen.add(canvas_digest(page)["hash"])
    page.keyboard.press("End")
    page.wait_for_function(f"() => {viewer}.stats.lastDrawnIndex === {SLICES - 1}")
    last = canvas_digest(page)
    seen.add(last["hash"])
    assert len(seen) == 3
    assert f"Image {SLICES} / {SLICES}" in page.locator("#overlay-bl").inner_text()
    # a window preset: another window, other pixels
    before = page.evaluate(f"{viewer}.window")
    page.select_option("#preset", label="5. Lung")
    # the overlay is written by the draw that shows the new window
    page.wait_for_function(
        "() => /W 1500\\s+L -600/.test(document.getElementById('overlay-br').textContent)"
    )
    after = page.evaluate(f"{viewer}.window")
    assert after == {"center": -600, "width": 1500}
    assert after != before
    assert canvas_digest(page)["hash"] != last["hash"]
    assert "W 1500 L -600" in page.locator("#overlay-br").inner_text()
    # scrolling through all of it, once loaded, is drawing only
    started = time.monotonic()
    page.evaluate(f"""async () => {{
        for (let i = 0; i < {SLICES}; i++) {{
            {viewer}.go(i);
            await new Promise(r => requestAnimationFrame(r));
        }}
    }}""")
    assert time.monotonic() - started < 20
    screenshot(page, "viewer")
    assert page.errors == []  # type: ignore[attr-defined]


def test_upload_a_folder(site: Site, browser: Browser, tmp_path: Path) -> None:
    folder = tmp_path / "exam"
    (folder / "series").mkdir(parents=True)
    study = generate_uid()
    files = [make_instance(StudyInstanceUID=study, InstanceNumber=n) for n in range(6)]
    for n, raw in enumerate(files):
        (folder / "series" / f"IM{n:04d}").write_bytes(raw)
    (folder / "notes.txt").write_text("not an image")
    # a ZIP archive, read in the browser: one entry stored, one deflated
    zipped = [make_instance(StudyInstanceUID=study, InstanceNumber=n) for n in (10, 11)]
    with zipfile.ZipFile(folder / "more.zip", "w") as archive:
        archive.writestr("in/zip/a.dcm", zipped[0], compress_type=zipfile.ZIP_STORED)
        archive.writestr("in/zip/b.dcm", zipped[1], compress_type=zipfile.ZIP_DEFLATED)
    # a PS3.10 prefix and nothing readable after it: refused by the server, not by the page
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00" + b"junk" * 64)
    site.store([files[0]])  # already in the archive: skipped
    page = new_page(browser, site, subject="tech", permissions=["read", "write"])
    # the network fails on the first batch: the page sends it again
    failed = {"n": 0}

    def flaky(route: Route) -> None:
        if route.request.method == "POST" and failed["n"] == 0:
            failed["n"] += 1
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/dicom-web/studies", flaky)
    page.goto(f"{site.url}/upload")
    page.set_input_files("#pick-folder", str(folder))
    page.wait_for_selector("#upload[data-finished='true']", timeout=60_000)
    screenshot(page, "upload")
    rows = {
        row.locator("td").nth(0).inner_text(): row.locator("td").nth(1).inner_text()
        for row in page.locator("#upload-results tr").all()
    }
    assert rows["exam/notes.txt"] == "refused"
    assert rows["exam/broken.dcm"] == "refused"
    broken = page.locator("#upload-results tr", has_text="broken.dcm").locator("td").nth(2)
    assert "the server cannot read it as DICOM" in broken.inner_text()
    assert rows["exam/series/IM0000"] == "already stored"
    assert [rows[f"exam/series/IM{n:04d}"] for n in range(1, 6)] == ["stored"] * 5
    assert rows["exam/more.zip \u203a in/zip/a.dcm"] == "stored"
    assert rows["exam/more.zip \u203a in/zip/b.dcm"] == "stored"
    assert failed["n"] == 1
    assert page.locator("#count-stored").inner_text() == "7"
    assert page.locator("#count-refused").inner_text() == "2"
    assert page.locator("#progress").evaluate("p => p.value === p.max")
    detail = page.locator("#upload-results tr", has_text="notes.txt").locator("td").nth(2)
    assert "not a DICOM file" in detail.inner_text()


def test_a_2gb_file_is_refused_without_being_read(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    big = tmp_path / "huge.dcm"
    with big.open("wb") as f:  # sparse: 2 GiB on the page, nothing on the disk
        f.truncate(2 * 1024**3)
    page = new_page(browser, site, subject="tech", permissions=["read", "write"])
    page.goto(f"{site.url}/upload")
    started = time.monotonic()
    page.set_input_files("#pick-files", str(big))
    page.wait_for_selector("#upload[data-finished='true']", timeout=30_000)
    assert time.monotonic() - started < 20
    row = page.locator("#upload-results tr").first
    assert row.locator("td").nth(1).inner_text() == "refused"
    assert "larger (2048 MiB) than this server accepts per file (1024 MiB)" in row.inner_text()
    os.remove(big)


def test_share_a_study_and_revoke_it(site: Site, browser: Browser, ct_study: str) -> None:
    owner = new_page(browser, site, subject="sam", permissions=["read", "write"])
    owner.goto(f"{site.url}/studies/{ct_study}")
    owner.select_option("#share-expiry", "1")
    owner.fill("#share-label", "Dr Second Opinion")
    owner.click("#make-share")
    link = owner.locator("#share-url").input_value()
    assert link.startswith(f"{site.url}/share/{ct_study}#")

    # a fresh browser context: no account, no cookie but what the link gives
    visitor = new_page(browser)
    visitor.goto(link)
    visitor.wait_for_url(f"{site.url}/share/{ct_study}/view")
    assert "#" not in visitor.url  # the token left the address bar
    visitor.wait_for_function(
        "() => window.lightboxViewer && window.lightboxViewer.stats.firstImageAt"
    )
    assert canvas_digest(visitor)["levels"] > 2
    assert visitor.locator("text=Back to the study").count() == 0
    screenshot(visitor, "shared-viewer")
    cookies = visitor.context.cookies()
    assert {c["path"] for c in cookies} == {f"/share/{ct_study}", f"/dicom-web/studies/{ct_study}"}
    assert all(c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies)
    # nothing else of the archive
    assert visitor.goto(f"{site.url}/dicom-web/studies").status == 401  # type: ignore[union-attr]

    owner.goto(f"{site.url}/shares")
    row = owner.locator("tr", has_text="Dr Second Opinion")
    row.locator("button.revoke-share").click()
    owner.wait_for_url(f"{site.url}/shares")
    assert "revoked" in owner.locator("tr", has_text="Dr Second Opinion").inner_text()
    # refused from now on (the deny list)
    response = visitor.goto(f"{site.url}/share/{ct_study}/view")
    assert response is not None
    assert response.status == 401
    assert "This link cannot be opened" in visitor.content()
    again = new_page(browser)
    again.goto(link)
    again.wait_for_selector("#share-status.alert")
    assert "expired or was revoked" in again.locator("#share-status").inner_text()
    screenshot(again, "share-revoked")
    uses = site.audit_until(actor="share:sam for Dr Second Opinion")
    assert {"share-open", "view", "metadata", "frames"} <= {e["action"] for e in uses}


def test_an_admin_filters_the_audit_trail(site: Site, browser: Browser, ct_study: str) -> None:
    assert site.audit_until(action="store", study=ct_study)
    page = new_page(browser, site, subject="root", permissions=ADMIN)
    page.goto(f"{site.url}/admin/audit")
    page.fill("#f-patient", "BR-1")
    page.fill("#f-action", "store")
    # the page opens with the unfiltered trail in #audit-results: mark it, so that the wait
    # below is for the filtered results that replace it, not for the rows already there
    page.evaluate("document.getElementById('audit-results').dataset.before = 'filter'")
    page.click("#apply-filter")
    page.wait_for_function(
        "() => !document.getElementById('audit-results').dataset.before"
        " && document.querySelectorAll('#audit-results .audit-row').length > 0"
        " && document.getElementById('audit-count').textContent.includes('event')"
    )
    rows = page.locator("#audit-results .audit-row")
    assert rows.count() >= 1
    for k in range(rows.count()):
        text = rows.nth(k).inner_text()
        assert "store" in text
        assert "BR-1" in text
    assert "BR-1" not in page.url  # the filters were posted
    page.click("#verify")
    page.wait_for_selector("#verify-status")
    assert "intact" in page.locator("#verify-status").inner_text()
    screenshot(page, "admin-audit")
    with page.expect_download() as download:
        page.click("#export-csv")
    saved = download.value.path()
    assert saved is not None
    assert "BR-1" in Path(saved).read_text()

"""A study's page (issue 22, point 2): details, series, reports, actions per permission, and
deletion with confirmation through the delete service."""

from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from app.services.audit import AuditFilter
from tests.auth.helpers import Tokens, auth_settings
from tests.factories import make_instance, make_pdf_dataset, make_sr_dataset, to_bytes
from tests.web.archive import csrf_of, store, store_study, text_of
from tests.web.helpers import ALL, csrf_header, signed_in, web_client
from tests.web.test_headers import inline_code

HOSTILE = '<script>alert("x")</script>'
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"


async def test_the_page_shows_details_series_and_reports(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        study = generate_uid()
        ct = generate_uid()
        # every instance carries the study's values: the last one stored sets the study's
        # description and accession (a report left with the factory's would win at random)
        patient = {
            "PatientName": "Doe^Jane",
            "PatientID": "PID-7",
            "AccessionNumber": "ACC-9",
            "StudyDescription": "CT ABDOMEN",
        }
        await store(
            http,
            settings,
            [
                make_instance(
                    StudyInstanceUID=study,
                    SeriesInstanceUID=ct,
                    InstanceNumber=n,
                    **patient,
                    SeriesDescription="AXIAL 5mm",
                )
                for n in (1, 2, 3)
            ]
            + [
                to_bytes(
                    make_sr_dataset(
                        "Radiology report",
                        ["No acute findings.", f"Impression: {HOSTILE}"],
                        StudyInstanceUID=study,
                        SeriesInstanceUID=generate_uid(),
                        SeriesNumber=90,
                        **patient,
                    )
                ),
                to_bytes(
                    make_pdf_dataset(
                        PDF + b"\0",
                        EncapsulatedDocumentLength=len(PDF),
                        StudyInstanceUID=study,
                        SeriesInstanceUID=generate_uid(),
                        SeriesNumber=91,
                        SeriesDescription="Scanned request",
                        **patient,
                    )
                ),
            ],
        )
        await signed_in(http, services, permissions=["read"])
        page = await http.get(f"/studies/{study}")
        assert page.status_code == 200
        text = text_of(page.text)
        for shown in ("Doe, Jane", "PID-7", "ACC-9", "CT ABDOMEN", "AXIAL 5mm", "3 instances"):
            assert shown in text, shown
        # a thumbnail per image series, from the DICOMweb root (same origin)
        assert f'src="/dicom-web/studies/{study}/series/{ct}/thumbnail"' in page.text
        # the reports: the SR's text loaded into the page, the PDF inline
        assert "Reports" in text
        assert "Scanned request" in text
        assert f"/studies/{study}/reports/" in page.text
        assert "/rendered?accept=application/pdf" in page.text
        assert '<iframe class="pdf"' in page.text
        assert inline_code(page.text) == []
        report_url = page.text.split('hx-get="', 1)[1].split('"', 1)[0]
        report = await http.get(report_url, headers={"HX-Request": "true"})
        assert report.status_code == 200
        assert "Radiology report" in report.text  # the document's title
        assert "No acute findings." in report.text
        assert "Impression: &lt;script&gt;" in report.text  # escaped, never markup
        assert "<script>alert" not in report.text
        whole = await http.get(report_url)  # without htmx: a page of its own
        assert "<html" in whole.text
        assert "No acute findings." in whole.text
        pdf_url = page.text.split('<iframe class="pdf" src="', 1)[1].split('"', 1)[0]
        pdf = await http.get(pdf_url.replace("&amp;", "&"))
        assert pdf.status_code == 200
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.content == PDF


@pytest.mark.parametrize(
    ("permissions", "controls"),
    [
        (["read"], {"open-viewer", "download"}),
        (["read", "write"], {"open-viewer", "download", "share"}),
        (ALL, {"open-viewer", "download", "share", "delete"}),
    ],
)
async def test_controls_follow_permissions(
    database_url: str, tmp_path: Path, permissions: list[str], controls: set[str]
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        study = await store_study(http, settings)
        session = await signed_in(http, services, permissions=permissions)
        page = await http.get(f"/studies/{study}")
        for control in ("open-viewer", "download", "share", "delete"):
            assert (f'id="{control}"' in page.text) == (control in controls), control
        assert ("make-share" in page.text) == ("share" in controls)
        # a control not shown is refused when forced; one shown works
        token = csrf_header(services, session)["X-CSRF-Token"]
        confirm = await http.get(f"/studies/{study}/delete")
        assert confirm.status_code == (200 if "delete" in controls else 403)
        forced_share = await http.post(
            f"/studies/{study}/shares", data={"csrf_token": token, "expires": "1"}
        )
        assert forced_share.status_code == (200 if "share" in controls else 403)
        forced_delete = await http.post(f"/studies/{study}/delete", data={"csrf_token": token})
        assert forced_delete.status_code == (303 if "delete" in controls else 403)


async def test_deleting_asks_then_deletes_through_the_delete_service(
    database_url: str, tmp_path: Path
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        study = await store_study(http, settings, instances=2, PatientID="DEL-1")
        await signed_in(http, services, subject="erin", permissions=ALL)
        confirm = await http.get(f"/studies/{study}/delete")
        assert confirm.status_code == 200
        assert "cannot be undone" in confirm.text
        token = csrf_of(confirm.text)
        # without the CSRF token nothing happens
        assert (await http.post(f"/studies/{study}/delete")).status_code == 403
        done = await http.post(f"/studies/{study}/delete", data={"csrf_token": token})
        assert done.status_code == 303
        assert done.headers["location"] == f"/?deleted={study}"
        after = await http.get(done.headers["location"])
        assert f"The study {study} was deleted." in text_of(after.text)
        # gone from the archive: the page answers 410 (the tombstone), DICOMweb too
        assert (await http.get(f"/studies/{study}")).status_code == 410
        bearer = Tokens(settings).headers(["read"])
        assert (await http.get(f"/dicom-web/studies/{study}", headers=bearer)).status_code == 410
        await services.audit.flush()
        events, _ = await services.audit.search(
            AuditFilter(actor="erin", action="delete"), limit=10, offset=0
        )
        assert events
        assert events[0]["study_uid"] == study
        assert events[0]["patient_id"] == "DEL-1"
        assert events[0]["count"] == 2


async def test_deletion_switched_off(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data", allow_delete=False)
    async with web_client(settings) as (services, http):
        study = await store_study(http, settings)
        session = await signed_in(http, services, permissions=ALL)
        page = await http.get(f"/studies/{study}")
        assert 'id="delete"' not in page.text
        token = csrf_header(services, session)["X-CSRF-Token"]
        refused = await http.post(f"/studies/{study}/delete", data={"csrf_token": token})
        assert refused.status_code == 405


async def test_unknown_and_malformed_studies(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await signed_in(http, services, permissions=["read"])
        missing = await http.get(f"/studies/{generate_uid()}")
        assert missing.status_code == 404
        assert "<html" in missing.text  # a page, not a problem document
        assert (await http.get("/studies/not-a-uid")).status_code == 400


async def test_html_in_the_study_is_escaped(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        study = await store_study(
            http,
            settings,
            PatientName=f"{HOSTILE}^x",
            StudyDescription="<img src=x onerror=alert(1)>",
            SeriesDescription="<svg onload=alert(2)>",
            ReferringPhysicianName="<b>Dr</b>",
        )
        await signed_in(http, services, permissions=ALL)
        page = await http.get(f"/studies/{study}")
        for raw in ("<script>alert", "<img src=x", "<svg onload", "<b>Dr</b>"):
            assert raw not in page.text, raw
        assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
        assert inline_code(page.text) == []

"""The built-in viewer's page (issue 22, point 3): the JSON it hands ``viewer.js`` (data, never
code), the series it opens, escaping. (tests/browser/test_pages.py drives it in Chromium.)"""

import json
import re
from pathlib import Path

from pydicom.uid import generate_uid

from app.web.templating import STATIC_DIR
from tests.auth.helpers import auth_settings
from tests.factories import make_instance, make_sr_dataset, to_bytes
from tests.web.archive import store
from tests.web.helpers import signed_in, web_client
from tests.web.test_headers import inline_code


def viewer_data(html: str) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', html)
    assert found, "no viewer data"
    data: dict[str, object] = json.loads(found.group(1))
    return data


async def test_the_page_hands_the_script_the_study_and_its_image_series(
    database_url: str, tmp_path: Path
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        study, first, second = generate_uid(), generate_uid(), generate_uid()
        hostile = "</script><script>alert(1)</script>"
        await store(
            http,
            settings,
            [
                make_instance(
                    StudyInstanceUID=study,
                    SeriesInstanceUID=first,
                    SeriesNumber=1,
                    PatientName=f"{hostile}^A",
                    StudyDescription="<img src=x onerror=alert(2)>",
                ),
                make_instance(
                    StudyInstanceUID=study,
                    SeriesInstanceUID=second,
                    SeriesNumber=2,
                    PatientName=f"{hostile}^A",
                    Modality="MR",
                ),
                to_bytes(
                    make_sr_dataset(
                        "Report", ["text"], StudyInstanceUID=study, PatientName=f"{hostile}^A"
                    )
                ),
            ],
        )
        await signed_in(http, services, permissions=["read"])
        page = await http.get(f"/studies/{study}/view")
        assert page.status_code == 200
        # no inline code: the one script without src is the JSON data block (no markup in it)
        assert inline_code(page.text) == []
        assert "</script><script>alert" not in page.text
        data = viewer_data(page.text)
        assert data["study"] == study
        assert data["dicomweb"] == "/dicom-web"
        assert data["initial"] == first
        series = data["series"]
        assert isinstance(series, list)
        assert [s["uid"] for s in series] == [first, second]  # the report is no image series
        patient = data["patient"]
        assert isinstance(patient, dict)
        assert patient["name"].startswith(hostile)  # the value itself, for textContent
        chosen = await http.get(f"/studies/{study}/view", params={"series": second})
        assert viewer_data(chosen.text)["initial"] == second
        unknown = await http.get(f"/studies/{study}/view", params={"series": "1.2.3"})
        assert viewer_data(unknown.text)["initial"] == first


def test_the_viewer_script_never_writes_markup() -> None:
    """DICOM values reach the page through textContent only (no innerHTML, no
    insertAdjacentHTML, no document.write) in every script of ours."""
    for script in ("viewer.js", "upload.js", "studies.js", "share.js", "zip.js", "lightbox.js"):
        source = (STATIC_DIR / script).read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert sink not in source, (script, sink)
        assert not re.search(r"\beval\(|new Function\(", source), script

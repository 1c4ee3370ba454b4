"""What the error boundary answers and logs (app/api/errors.py), on PostgreSQL and SQLite.

A refusal is a 4xx with a reason and at most one INFO line, never an ERROR with a traceback:
a multipart boundary longer than python-multipart reads, metadata whose VR is not a VR or whose
US value cannot be a US, a frame the codecs cannot decode. A genuine failure is a 500 problem
logged once, with its traceback; nothing is re-raised to the server (which would log it again).
"""

import logging

import httpx
import orjson
import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

from app.config import Settings
from app.errors import Gone
from app.main import create_app
from app.services.container import Services
from tests.corpus import corpus_path
from tests.factories import multipart, stow_headers, to_bytes

ROOT = "/dicom-web"


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_boundary_too_long_is_a_400_with_its_reason(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    boundary = "b" * 300
    body = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\nx\r\n--{boundary}--\r\n"
    with caplog.at_level(logging.INFO):
        response = await client.post(
            f"{ROOT}/studies",
            content=body.encode(),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
            },
        )
    assert response.status_code == 400
    assert "boundary is 300 characters long; at most 256" in response.json()["detail"]
    assert _errors(caplog) == []
    (refused,) = [r for r in caplog.records if r.name == "app.api.errors"]
    assert refused.levelno == logging.INFO
    assert "refused (400)" in refused.getMessage()


def _metadata(**attributes: object) -> dict[str, object]:
    return {
        "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.7"]},
        "00080018": {"vr": "UI", "Value": [str(generate_uid())]},
        "0020000D": {"vr": "UI", "Value": [str(generate_uid())]},
        "0020000E": {"vr": "UI", "Value": [str(generate_uid())]},
        **attributes,
    }


@pytest.mark.parametrize(
    ("attribute", "reason"),
    [
        ({"vr": "ZZ", "Value": [1]}, "(0028,0010): vr 'ZZ' is not a VR of PS3.5 Table 6.2-1"),
        (
            {"vr": "US", "Value": [1e300]},
            "the instance cannot be encoded: (0028,0010) US: a value does not fit the VR",
        ),
    ],
)
async def test_stow_json_refusals_are_logged_without_traceback(
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    attribute: dict[str, object],
    reason: str,
) -> None:
    body = (
        b"--bb\r\nContent-Type: application/dicom+json\r\n\r\n"
        + orjson.dumps([_metadata(**{"00280010": attribute})])
        + b"\r\n--bb--\r\n"
    )
    with caplog.at_level(logging.INFO):
        response = await client.post(
            f"{ROOT}/studies",
            content=body,
            headers={
                "Content-Type": 'multipart/related; type="application/dicom+json"; boundary=bb'
            },
        )
    assert response.status_code == 400
    (failed,) = response.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert _errors(caplog) == []
    logged = [r.getMessage() for r in caplog.records if r.name == "app.api.stow"]
    assert logged == [f"STOW failure 0xc000: {reason}"]
    assert "Traceback" not in caplog.text
    assert str(int(1e300)) not in caplog.text  # the value pydicom quoted


async def test_an_undecodable_frame_is_a_406_without_traceback(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    ds = dcmread(corpus_path("emri_small_jpeg_2k_lossless.dcm"))
    ds.NumberOfFrames = 1
    ds.PixelData = encapsulate([b"not a JPEG 2000 codestream"])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    stored = await client.post(
        f"{ROOT}/studies", content=multipart([to_bytes(ds)]), headers=stow_headers()
    )
    assert stored.status_code == 200, stored.text
    url = (
        f"{ROOT}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/1"
    )
    with caplog.at_level(logging.INFO):
        response = await client.get(
            url, headers={"Accept": 'multipart/related; type="application/octet-stream"'}
        )
    assert response.status_code == 406
    assert "could not be decoded" in response.json()["detail"]
    assert _errors(caplog) == []


async def test_refusals_and_failures_raised_in_routes(
    settings: Settings, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, services=services)

    async def gone() -> None:
        raise Gone("deleted a moment ago")

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/gone", gone)
    app.add_api_route("/broken", broken)
    # raise_app_exceptions (the default): an exception reaching the server would fail the test
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        with caplog.at_level(logging.INFO):
            refused = await http.get("/gone")
            failed = await http.get("/broken?PatientName=Doe")
    assert (refused.status_code, refused.json()["detail"]) == (410, "deleted a moment ago")
    assert (failed.status_code, failed.json()["detail"]) == (500, "internal error")
    assert failed.headers["content-type"] == "application/problem+json"
    records = [r for r in caplog.records if r.name == "app.api.errors"]
    assert [(r.levelno, r.getMessage(), r.exc_info is not None) for r in records] == [
        (logging.INFO, "GET /gone refused (410): deleted a moment ago", False),
        (logging.ERROR, "unhandled error in GET /broken", True),
    ]
    assert len(_errors(caplog)) == 1  # logged once; the query (patient data) never
    assert not any("Doe" in r.getMessage() for r in caplog.records if r.name.startswith("app."))

"""STOW-RS tells the client why an instance failed, not only the code: a ``Warning`` header
field per failed (or warned) instance, beside FailureReason (0008,1197) in the body (PS3.18
§10.5.3), and what a DICOMweb client sees of it."""

import io

import httpx
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from app.api.stow import MAX_REASON_WARNINGS
from tests.factories import make_dataset, make_instance, multipart, stow_headers, to_bytes

STUDIES = "/dicom-web/studies"


def _no_file_meta() -> bytes:
    """A data set without its PS3.10 header (as some toolkits send it)."""
    ds = make_dataset()
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_dataset(out, ds)
    return bytes(out.getvalue())


def _media_storage_differs() -> bytes:
    raw = to_bytes(make_dataset(SOPInstanceUID="1.2.3.4.5.6.7"))
    return raw.replace(b"1.2.3.4.5.6.7", b"1.2.3.4.5.6.8", 1)


def _warnings(response: httpx.Response) -> list[str]:
    return response.headers.get_list("warning")


async def test_each_failure_says_why(client: httpx.AsyncClient) -> None:
    good = make_instance()
    no_study = make_dataset()
    del no_study.StudyInstanceUID
    body = multipart(
        [good, _no_file_meta(), to_bytes(no_study), _media_storage_differs(), b"garbage" * 10]
    )
    response = await client.post(STUDIES, content=body, headers=stow_headers())
    assert response.status_code == 202
    # the codes stay where Table 10.5.3-1 puts them
    # the codes stay where Table 10.5.3-1 puts them (parts that name no instance it can trust:
    # Other Failures Sequence)
    failed = response.json()["0008119A"]["Value"]
    assert [item["00081197"]["Value"][0] for item in failed] == [0xC000] * 4
    warnings = _warnings(response)
    assert len(warnings) == 4, warnings
    assert all(w.startswith('299 lightbox "') and w.endswith('"') for w in warnings)
    joined = "\n".join(warnings)
    assert "part 2: failure 0xC000 not a DICOM PS3.10 file (no File Meta Information)" in joined
    assert "StudyInstanceUID missing or invalid" in joined
    assert "part 4: failure 0xC000 MediaStorageSOPInstanceUID does not match SOPInstanceUID" in (
        joined
    )
    assert "part 5: failure 0xC000" in joined
    assert "part 1" not in joined  # the stored instance has nothing to say


async def test_a_study_mismatch_and_a_duplicate_say_why(client: httpx.AsyncClient) -> None:
    raw = make_instance()
    sop = str(dcmread(io.BytesIO(raw), stop_before_pixels=True).SOPInstanceUID)
    elsewhere = await client.post(
        f"{STUDIES}/1.2.826.0.1.3680043.8.498.999", content=multipart([raw]), headers=stow_headers()
    )
    assert elsewhere.status_code == 409
    [warning] = _warnings(elsewhere)
    assert warning == (
        f'299 lightbox "{sop}: failure 0x0110 StudyInstanceUID does not match the study in the '
        'request URL"'
    )

    assert (
        await client.post(STUDIES, content=multipart([raw]), headers=stow_headers())
    ).status_code == 200
    changed = raw[:-1] + bytes([raw[-1] ^ 1])
    duplicate = await client.post(STUDIES, content=multipart([changed]), headers=stow_headers())
    assert duplicate.status_code == 409
    assert _warnings(duplicate) == [
        f'299 lightbox "{sop}: failure 0x0111 a different object with this SOP Instance UID is '
        'stored"'
    ]


async def test_warning_fields_are_bounded(client: httpx.AsyncClient) -> None:
    parts = [b"not dicom at all"] * (MAX_REASON_WARNINGS + 5)
    response = await client.post(STUDIES, content=multipart(parts), headers=stow_headers())
    assert response.status_code == 400
    warnings = _warnings(response)
    assert len(warnings) == MAX_REASON_WARNINGS + 1
    assert warnings[-1] == '299 lightbox "and 5 more (the server log has every reason)"'


async def test_a_successful_store_has_no_warning(client: httpx.AsyncClient) -> None:
    response = await client.post(
        STUDIES, content=multipart([make_instance()]), headers=stow_headers()
    )
    assert response.status_code == 200
    assert _warnings(response) == []

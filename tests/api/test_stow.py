"""STOW-RS over the ASGI app, on PostgreSQL and SQLite (STOW-01..17, GEN-02)."""

import hashlib
import io
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, generate_uid
from sqlalchemy import func, select

from app.config import DuplicatePolicy, PatientConflictPolicy, Settings
from app.index.models import Instance, Series, Study
from app.services.container import Services
from tests.conftest import app_client, make_settings
from tests.factories import BOUNDARY, make_dataset, make_instance, multipart, stow_headers, to_bytes

STUDIES = "/dicom-web/studies"
FAILED = "00081198"
REFERENCED = "00081199"
OTHER = "0008119A"


def _seq(body: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = body.get(tag, {}).get("Value", [])
    return items


def _reasons(body: dict[str, Any], tag: str = FAILED) -> list[int]:
    return [item["00081197"]["Value"][0] for item in _seq(body, tag)]


async def _counts(services: Services) -> tuple[int, int, int]:
    async with services.db.read() as conn:
        n = []
        for model in (Study, Series, Instance):
            n.append((await conn.execute(select(func.count()).select_from(model))).scalar_one())
    return n[0], n[1], n[2]


async def _blob_count(services: Services) -> int:
    return len([obj async for obj in services.store.list("dicom/")])


async def test_store_one_instance(client: httpx.AsyncClient, services: Services) -> None:
    """STOW-01/13/16: stored, response module, RetrieveURLs, Content-Location; bytes kept."""
    ds = make_dataset()
    raw = to_bytes(ds)
    response = await client.post(STUDIES, content=multipart([raw]), headers=stow_headers())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    body = response.json()
    study_url = f"http://testserver/dicom-web/studies/{ds.StudyInstanceUID}"
    assert body["00081190"] == {"vr": "UR", "Value": [study_url]}
    assert FAILED not in body
    assert OTHER not in body
    [item] = _seq(body, REFERENCED)
    assert item["00081150"]["Value"] == [ds.SOPClassUID]
    assert item["00081155"]["Value"] == [ds.SOPInstanceUID]
    assert item["00081190"]["Value"] == [
        f"{study_url}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    ]
    assert "00081196" not in item
    assert response.headers["content-location"] == study_url
    assert list(body) == sorted(body)  # JSON-01

    async with services.db.read() as conn:
        row = (await conn.execute(select(Instance))).one()
        study = (await conn.execute(select(Study))).one()
        series = (await conn.execute(select(Series))).one()
    assert row.sha256 == hashlib.sha256(raw).hexdigest()
    assert row.size == len(raw)
    assert row.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert (row.rows, row.columns, row.number_of_frames) == (8, 8, 1)
    assert study.patient_name == "Doe^Jane"
    assert study.patient_name_norm == "DOE^JANE"
    assert str(study.study_date) == "2024-01-31"
    assert (study.num_series, study.num_instances, series.num_instances) == (1, 1, 1)
    stored = b"".join([chunk async for chunk in services.store.open(row.blob_key)])
    assert stored == raw  # STOW-17: stored as received


async def test_store_many_studies_and_single_part(
    client: httpx.AsyncClient, services: Services
) -> None:
    """STOW-13: RetrieveURL empty across studies; STOW-03 single application/dicom body."""
    raws = [make_instance() for _ in range(3)]
    response = await client.post(STUDIES, content=multipart(raws), headers=stow_headers())
    assert response.status_code == 200
    body = response.json()
    assert body["00081190"] == {"vr": "UR"}
    assert "content-location" not in response.headers
    assert len(_seq(body, REFERENCED)) == 3

    single = make_instance()
    response = await client.post(
        STUDIES, content=single, headers={"Content-Type": "application/dicom"}
    )
    assert response.status_code == 200
    assert await _counts(services) == (4, 4, 4)


async def test_counts_follow_series_and_instances(
    client: httpx.AsyncClient, services: Services
) -> None:
    """QIDO-26 counters kept by ingest: 2 series x 3 instances in one study, across requests."""
    study = generate_uid()
    series = [generate_uid(), generate_uid()]
    for batch in range(3):
        raws = [
            make_instance(StudyInstanceUID=study, SeriesInstanceUID=s, InstanceNumber=batch)
            for s in series
        ]
        response = await client.post(
            f"{STUDIES}/{study}", content=multipart(raws), headers=stow_headers()
        )
        assert response.status_code == 200
    async with services.db.read() as conn:
        row = (await conn.execute(select(Study.num_series, Study.num_instances))).one()
        per_series = (await conn.execute(select(Series.num_instances))).scalars().all()
    assert tuple(row) == (2, 6)
    assert sorted(per_series) == [3, 3]


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        ("application/json", "not multipart"),
        ('multipart/related; type="application/dicom"', "no boundary"),
        # the JSON and XML forms are implemented (STOW-02, tests/api/test_stow_json.py)
        (f'multipart/related; type="text/xml"; boundary={BOUNDARY}', "xml"),
        (f'multipart/related; type="image/jpeg"; boundary={BOUNDARY}', "type"),
        (f"multipart/related; boundary={BOUNDARY}", "no type"),
        ("", "missing"),
    ],
)
async def test_unsupported_media_type(
    client: httpx.AsyncClient, services: Services, content_type: str, reason: str
) -> None:
    """STOW-04: 415 and nothing stored."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post(STUDIES, content=multipart([make_instance()]), headers=headers)
    assert response.status_code == 415, reason
    assert response.headers["content-type"] == "application/problem+json"
    assert await _counts(services) == (0, 0, 0)
    assert await _blob_count(services) == 0


async def test_framing_broken_before_first_part(
    client: httpx.AsyncClient, services: Services
) -> None:
    """STOW-05: a body that is not multipart at all gives 400."""
    response = await client.post(STUDIES, content=make_instance(), headers=stow_headers())
    assert response.status_code == 400
    assert await _counts(services) == (0, 0, 0)


async def test_truncated_body_keeps_complete_parts(
    client: httpx.AsyncClient, services: Services
) -> None:
    """STOW-05: parts before the cut are stored; the rest is reported as another failure."""
    first, second = make_instance(), make_instance()
    body = multipart([first, second])
    cut = body[: len(multipart([first], close=False)) + 300]
    response = await client.post(STUDIES, content=cut, headers=stow_headers())
    assert response.status_code == 202
    result = response.json()
    assert len(_seq(result, REFERENCED)) == 1
    assert _reasons(result, OTHER) == [0xC000]
    assert await _counts(services) == (1, 1, 1)
    assert await _blob_count(services) == 1


def _bad_parts() -> dict[str, bytes]:
    good = make_instance()
    no_uid = make_dataset()
    del no_uid.SeriesInstanceUID
    bad_uid = make_dataset(SOPInstanceUID="1.2.03.4")
    bad_uid.file_meta.MediaStorageSOPInstanceUID = UID("1.2.03.4")
    escape = make_dataset(StudyInstanceUID="../../x")
    mismatch = to_bytes(make_dataset(SOPInstanceUID="1.2.3.4.5.6.7"))
    # pydicom rewrites the file meta from the dataset, so edit the bytes: the first occurrence
    # of the UID is MediaStorageSOPInstanceUID (0002,0003)
    mismatch = mismatch.replace(b"1.2.3.4.5.6.7", b"1.2.3.4.5.6.8", 1)
    return {
        "not dicom": b"this is not a DICOM file" * 20,
        "truncated": good[: len(good) // 2],
        "missing series uid": to_bytes(no_uid),
        "invalid uid": to_bytes(bad_uid),
        "path escape": to_bytes(escape),
        "media storage uid mismatch": mismatch,
        "empty": b"",
    }


@pytest.mark.parametrize("case", list(_bad_parts()))
async def test_bad_parts_fail_with_cannot_understand(
    client: httpx.AsyncClient, services: Services, case: str
) -> None:
    """STOW-06: 0xC000, HTTP 400 when nothing is stored, nothing written."""
    response = await client.post(
        STUDIES, content=multipart([_bad_parts()[case]]), headers=stow_headers()
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert _reasons(body, FAILED) + _reasons(body, OTHER) == [0xC000]
    assert await _counts(services) == (0, 0, 0)
    assert await _blob_count(services) == 0


async def test_mixed_good_and_bad_gives_202(client: httpx.AsyncClient, services: Services) -> None:
    """STOW-15: some stored, some failed."""
    parts = [make_instance(), b"garbage" * 50, make_instance()]
    response = await client.post(STUDIES, content=multipart(parts), headers=stow_headers())
    assert response.status_code == 202
    body = response.json()
    assert len(_seq(body, REFERENCED)) == 2
    assert _reasons(body, OTHER) == [0xC000]
    assert await _counts(services) == (2, 2, 2)


async def test_study_mismatch(client: httpx.AsyncClient, services: Services) -> None:
    """STOW-07: instance of another study: FailedSOPSequence 0x0110, 409."""
    ds = make_dataset()
    target = generate_uid()
    response = await client.post(
        f"{STUDIES}/{target}", content=multipart([to_bytes(ds)]), headers=stow_headers()
    )
    assert response.status_code == 409
    body = response.json()
    [item] = _seq(body, FAILED)
    assert item["00081155"]["Value"] == [ds.SOPInstanceUID]
    assert item["00081197"] == {"vr": "US", "Value": [0x0110]}  # STOW-14: a JSON number
    assert await _blob_count(services) == 0


async def test_malformed_study_uid_in_path(client: httpx.AsyncClient) -> None:
    """GEN-02: 400 for a malformed UID segment."""
    for bad in ("1.2.abc", "1..2", "01.2", "x" * 65):
        response = await client.post(
            f"{STUDIES}/{bad}", content=multipart([make_instance()]), headers=stow_headers()
        )
        assert response.status_code == 400, bad


async def test_identical_resend_is_success_and_rewrites_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    """STOW-09: same bytes again: success, the blob is not written again."""
    raw = make_instance()
    assert (
        await client.post(STUDIES, content=multipart([raw]), headers=stow_headers())
    ).status_code == 200
    [obj] = [o async for o in services.store.list("dicom/")]
    response = await client.post(STUDIES, content=multipart([raw, raw]), headers=stow_headers())
    assert response.status_code == 200
    assert len(_seq(response.json(), REFERENCED)) == 2
    [again] = [o async for o in services.store.list("dicom/")]
    assert again == obj  # same key, same mtime: nothing rewritten
    assert await _counts(services) == (1, 1, 1)


async def test_different_content_same_uid_rejected(
    client: httpx.AsyncClient, services: Services
) -> None:
    """STOW-09 default policy: different bytes under a stored SOP Instance UID: 0x0111, 409."""
    ds = make_dataset()
    first = to_bytes(ds)
    ds.SeriesDescription = "CHANGED"
    second = to_bytes(ds)
    assert (
        await client.post(STUDIES, content=multipart([first]), headers=stow_headers())
    ).status_code == 200
    response = await client.post(STUDIES, content=multipart([second]), headers=stow_headers())
    assert response.status_code == 409
    assert _reasons(response.json()) == [0x0111]
    assert await _blob_count(services) == 1
    async with services.db.read() as conn:
        sha = (await conn.execute(select(Instance.sha256))).scalar_one()
    assert sha == hashlib.sha256(first).hexdigest()


async def test_overwrite_policy_replaces(database_url: str, tmp_path: Any) -> None:
    """STOW-09 overwrite: new object stored with WarningReason 0xB000; old blob removed."""
    settings = make_settings(database_url, tmp_path, duplicate_policy=DuplicatePolicy.OVERWRITE)
    async with app_client(settings) as (services, client):
        ds = make_dataset()
        first = to_bytes(ds)
        ds.SeriesDescription = "CHANGED"
        second = to_bytes(ds)
        await client.post(STUDIES, content=multipart([first]), headers=stow_headers())
        response = await client.post(STUDIES, content=multipart([second]), headers=stow_headers())
        assert response.status_code == 202
        [item] = _seq(response.json(), REFERENCED)
        assert item["00081196"] == {"vr": "US", "Value": [0xB000]}
        objects = [o async for o in services.store.list("dicom/")]
        assert len(objects) == 1
        data = b"".join([c async for c in services.store.open(objects[0].key)])
        assert data == second
        assert await _counts(services) == (1, 1, 1)


async def test_series_under_another_study(client: httpx.AsyncClient, services: Services) -> None:
    """STOW-10: a series UID already filed under another study fails with 0x0110."""
    series = generate_uid()
    first = make_instance(SeriesInstanceUID=series)
    second = make_instance(SeriesInstanceUID=series)  # new study UID, same series UID
    assert (
        await client.post(STUDIES, content=multipart([first]), headers=stow_headers())
    ).status_code == 200
    response = await client.post(STUDIES, content=multipart([second]), headers=stow_headers())
    assert response.status_code == 409
    assert _reasons(response.json()) == [0x0110]
    assert await _blob_count(services) == 1


async def test_patient_conflict(client: httpx.AsyncClient, services: Services) -> None:
    """STOW-10: a study already held under another PatientID is refused by default."""
    study = generate_uid()
    await client.post(
        STUDIES, content=multipart([make_instance(StudyInstanceUID=study)]), headers=stow_headers()
    )
    other = make_instance(StudyInstanceUID=study, PatientID="SOMEONE-ELSE")
    response = await client.post(STUDIES, content=multipart([other]), headers=stow_headers())
    assert response.status_code == 409
    assert _reasons(response.json()) == [0x0110]
    assert await _counts(services) == (1, 1, 1)


async def test_patient_conflict_accept_warns(database_url: str, tmp_path: Any) -> None:
    settings = make_settings(database_url, tmp_path, patient_conflict=PatientConflictPolicy.ACCEPT)
    async with app_client(settings) as (_services, c):
        study = generate_uid()
        await c.post(
            STUDIES,
            content=multipart([make_instance(StudyInstanceUID=study)]),
            headers=stow_headers(),
        )
        other = make_instance(StudyInstanceUID=study, PatientID="SOMEONE-ELSE")
        response = await c.post(STUDIES, content=multipart([other]), headers=stow_headers())
        assert response.status_code == 202
        [item] = _seq(response.json(), REFERENCED)
        assert item["00081196"]["Value"] == [0xB000]


async def test_request_over_the_cap(database_url: str, tmp_path: Any) -> None:
    """STOW-05: 413 past the configured request size, declared or streamed; nothing stored."""
    settings = make_settings(database_url, tmp_path)
    settings.limits.max_request_bytes = 4096
    async with app_client(settings) as (services, c):
        body = multipart([make_instance(rows=64, columns=64)])
        response = await c.post(STUDIES, content=body, headers=stow_headers())
        assert response.status_code == 413

        async def chunks() -> Any:
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        response = await c.post(STUDIES, content=chunks(), headers=stow_headers())
        assert response.status_code == 413
        assert await _counts(services) == (0, 0, 0)
        assert await _blob_count(services) == 0


def _deflated(ds_bytes: bytes, inflated_padding: int) -> bytes:
    """A deflated-syntax file whose dataset inflates to more than ``inflated_padding`` bytes."""
    ds = dcmread(io.BytesIO(ds_bytes))
    ds.ImageComments = "A" * 16
    ds.PixelData = bytes(inflated_padding)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


async def test_deflate_bomb(database_url: str, tmp_path: Any) -> None:
    """A tiny deflated part that inflates past the limit fails with 0xA700, not a 500/OOM."""
    settings = make_settings(database_url, tmp_path)
    settings.limits.max_inflated_bytes = 1 << 20
    async with app_client(settings) as (_services, c):
        bomb = _deflated(make_instance(), 8 << 20)
        assert len(bomb) < 64 * 1024  # zeros compress ~1000:1
        ok = _deflated(make_instance(), 1000)
        response = await c.post(STUDIES, content=multipart([bomb, ok]), headers=stow_headers())
        assert response.status_code == 202
        body = response.json()
        assert _reasons(body, FAILED) + _reasons(body, OTHER) == [0xA700]
        assert len(_seq(body, REFERENCED)) == 1


async def test_zero_preamble(database_url: str, tmp_path: Any) -> None:
    """STOW-18: with the flag on, the stored preamble is zeros."""
    settings = make_settings(database_url, tmp_path, zero_preamble=True)
    async with app_client(settings) as (services, c):
        raw = bytearray(make_instance())
        raw[:128] = b"MZ" + b"\x90" * 126  # a polyglot-looking preamble
        response = await c.post(STUDIES, content=multipart([bytes(raw)]), headers=stow_headers())
        assert response.status_code == 200
        [obj] = [o async for o in services.store.list("dicom/")]
        stored = await services.store.get_range(obj.key, 0, 132)
        assert stored == bytes(128) + b"DICM"


async def test_public_base_url(database_url: str, tmp_path: Any) -> None:
    """GEN-01: RetrieveURLs are built from the configured public base."""
    settings: Settings = make_settings(
        database_url, tmp_path, public_base_url="https://pacs.example.org/dw/"
    )
    async with app_client(settings) as (_services, c):
        ds = make_dataset()
        response = await c.post(STUDIES, content=multipart([to_bytes(ds)]), headers=stow_headers())
        body = response.json()
        assert body["00081190"]["Value"] == [
            f"https://pacs.example.org/dw/studies/{ds.StudyInstanceUID}"
        ]


async def test_forwarded_headers_only_from_trusted_proxies(
    database_url: str, tmp_path: Any
) -> None:
    """GEN-01: X-Forwarded-* honoured from a trusted proxy, ignored otherwise."""
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "pacs.example.org"}
    for trusted, expected in ((["127.0.0.1"], "https://pacs.example.org"), ([], "http://t")):
        settings = make_settings(database_url, tmp_path, trusted_proxies=trusted)
        async with app_client(settings, client_addr=("127.0.0.1", 5555)) as (_services, c):
            ds = make_dataset()
            response = await c.post(
                STUDIES,
                content=multipart([to_bytes(ds)]),
                headers=stow_headers() | forwarded,
            )
            url = response.json()["00081190"]["Value"][0]
            assert url == f"{expected}/dicom-web/studies/{ds.StudyInstanceUID}"


async def test_wrong_method_and_unknown_path(client: httpx.AsyncClient) -> None:
    """GEN-04: 405 with Allow on a known path; 404 on an unknown one."""
    response = await client.put(STUDIES, content=b"")
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert (await client.get("/dicom-web/nothing-here")).status_code == 404


async def test_health(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"index": "ok", "storage": "ok"}


async def test_framing_broken_after_a_stored_part(
    client: httpx.AsyncClient, services: Services
) -> None:
    """STOW-05: framing broken after N parts: those N kept, the rest reported (OtherFailures)."""
    first = make_instance()
    body = multipart([first], close=False)
    body += f"--{BOUNDARY}\r\nContent-Type application/dicom no colon\r\n".encode()
    body += (
        b"\x00\x01garbage header bytes\r\n\r\n"
        + make_instance()
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    response = await client.post(STUDIES, content=body, headers=stow_headers())
    assert response.status_code == 202, response.text
    result = response.json()
    assert len(_seq(result, REFERENCED)) == 1
    assert _reasons(result, OTHER) == [0xC000]
    assert await _counts(services) == (1, 1, 1)


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ("application/dicom+xml", 406),
        ("image/jpeg", 406),
        ("application/dicom+json;q=0", 406),
        ("application/dicom+xml, application/dicom+json;q=0.5", 200),
        ("application/json", 200),
        ("*/*", 200),
    ],
)
async def test_stow_response_negotiation(
    client: httpx.AsyncClient, services: Services, accept: str, status: int
) -> None:
    """STOW-12: DICOM JSON only; an Accept that excludes it gets 406 and nothing is stored."""
    headers = stow_headers() | {"Accept": accept}
    response = await client.post(STUDIES, content=multipart([make_instance()]), headers=headers)
    assert response.status_code == status
    assert await _counts(services) == ((1, 1, 1) if status == 200 else (0, 0, 0))

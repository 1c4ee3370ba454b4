"""WADO-RS retrieve over the ASGI app, on PostgreSQL and SQLite (RES-03, WADO-01/02/03/05, NEG)."""

import io
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG4HP41, UID, ImplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from sqlalchemy import select, update

from app.api.negotiation import Packaging, acceptable_dicom, parse_accept
from app.dicom.target import Target
from app.index.models import Instance
from app.services.container import Services
from app.services.retrieve import RetrieveService
from app.storage.base import StorageError
from tests.corpus import corpus_path
from tests.factories import make_dataset, multipart, stow_headers, to_bytes
from tests.multipart import Part
from tests.multipart import parse_multipart as read_multipart

ROOT = "/dicom-web"
BASE = f"http://testserver{ROOT}"
EVRLE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = str(JPEGBaseline8Bit)
OHIF_ACCEPT = "multipart/related; type=application/dicom; transfer-syntax=*"
DICOMWEB_CLIENT_ACCEPT = 'multipart/related; type="application/dicom"'


def parse_multipart(response: httpx.Response) -> tuple[str | None, list[Part]]:
    """(top-level transfer syntax, parts) of a multipart/related application/dicom response."""
    part_type, syntax, parts = read_multipart(response)
    assert part_type == "application/dicom"
    return syntax, parts


def location(study: str, series: str, sop: str) -> str:
    return f"{BASE}/studies/{study}/series/{series}/instances/{sop}"


@dataclass
class Stored:
    study: str
    series: list[str]  # series[0] has SeriesNumber 1, series[1] has 2
    raws: dict[str, bytes]  # SOPInstanceUID -> stored bytes
    order: list[tuple[str, str]]  # (series, sop) in WADO-01 order


async def _store(client: httpx.AsyncClient, raws: list[bytes], study: str | None = None) -> None:
    url = f"{ROOT}/studies" + (f"/{study}" if study else "")
    response = await client.post(url, content=multipart(raws), headers=stow_headers())
    assert response.status_code == 200, response.text


@pytest.fixture
async def stored(client: httpx.AsyncClient) -> Stored:
    """One study: series 2 (instances 2, 1) sent before series 1 (instances 3, 1, 2)."""
    study = str(generate_uid())
    series = [str(generate_uid()), str(generate_uid())]
    plan = [(1, 2), (1, 1), (0, 3), (0, 1), (0, 2)]  # (series index, InstanceNumber), sent order
    raws: dict[str, bytes] = {}
    numbered: list[tuple[int, int, str]] = []
    for series_index, number in plan:
        ds = make_dataset(
            StudyInstanceUID=study,
            SeriesInstanceUID=series[series_index],
            SeriesNumber=series_index + 1,
            InstanceNumber=number,
        )
        raws[ds.SOPInstanceUID] = to_bytes(ds)
        numbered.append((series_index, number, ds.SOPInstanceUID))
    await _store(client, list(raws.values()))
    order = [(series[s], sop) for s, _, sop in sorted(numbered)]
    return Stored(study, series, raws, order)


def _check_parts(parts: list[Part], stored: Stored, expected: list[tuple[str, str]]) -> None:
    assert [p.headers["Content-Location"] for p in parts] == [
        location(stored.study, series, sop) for series, sop in expected
    ]
    for part, (_, sop) in zip(parts, expected, strict=True):
        assert part.header_names == ["Content-Type", "Content-Location", "Content-Length"]
        assert part.headers["Content-Type"] == f"application/dicom; transfer-syntax={EVRLE}"
        assert part.payload == stored.raws[sop]
        assert part.headers["Content-Length"] == str(len(stored.raws[sop]))


# --- retrieve study / series / instance (RES-03, WADO-01, NEG-10) ---


async def test_retrieve_study(client: httpx.AsyncClient, stored: Stored) -> None:
    """WADO-01: every instance, ordered by SeriesNumber then InstanceNumber, bytes as stored."""
    response = await client.get(
        f"{ROOT}/studies/{stored.study}", headers={"Accept": DICOMWEB_CLIENT_ACCEPT}
    )
    assert response.status_code == 200, response.text
    syntax, parts = parse_multipart(response)
    assert syntax == EVRLE  # NEG-07 default; all parts share it, so it is on the top-level type
    _check_parts(parts, stored, stored.order)
    assert "warning" not in response.headers


async def test_retrieve_series(client: httpx.AsyncClient, stored: Stored) -> None:
    series = stored.series[1]
    response = await client.get(
        f"{ROOT}/studies/{stored.study}/series/{series}", headers={"Accept": OHIF_ACCEPT}
    )
    assert response.status_code == 200, response.text
    syntax, parts = parse_multipart(response)
    assert syntax == EVRLE
    _check_parts(parts, stored, [(s, sop) for s, sop in stored.order if s == series])


async def test_retrieve_instance_multipart(client: httpx.AsyncClient, stored: Stored) -> None:
    series, sop = stored.order[2]
    response = await client.get(f"{ROOT}/studies/{stored.study}/series/{series}/instances/{sop}")
    assert response.status_code == 200, response.text
    _, parts = parse_multipart(response)
    _check_parts(parts, stored, [(series, sop)])


async def test_retrieve_instance_single_part(client: httpx.AsyncClient, stored: Stored) -> None:
    """NEG-11: plain application/dicom on an instance gives one application/dicom body."""
    series, sop = stored.order[0]
    response = await client.get(
        f"{ROOT}/studies/{stored.study}/series/{series}/instances/{sop}",
        headers={"Accept": "application/dicom"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == f"application/dicom; transfer-syntax={EVRLE}"
    assert response.headers["content-length"] == str(len(stored.raws[sop]))
    assert response.headers["content-location"] == location(stored.study, series, sop)
    assert response.content == stored.raws[sop]


# --- content negotiation (NEG-01..06, NEG-11) ---


@pytest.mark.parametrize(
    "accept",
    [
        OHIF_ACCEPT,
        DICOMWEB_CLIENT_ACCEPT,
        'MULTIPART/Related; Type="Application/DICOM"; Transfer-Syntax="1.2.840.10008.1.2.1"',
        "*/*",
        "multipart/*",
        "multipart/related",
        "image/jpeg, multipart/related; type=application/dicom; q=0.2",
        None,  # no Accept header: treated as */* (NEG-04, strict_accept off)
    ],
)
async def test_accepted_forms(
    client: httpx.AsyncClient, stored: Stored, accept: str | None
) -> None:
    request = client.build_request("GET", f"{ROOT}/studies/{stored.study}")
    if accept is None:
        del request.headers["accept"]
    else:
        request.headers["accept"] = accept
    response = await client.send(request)
    assert response.status_code == 200, response.text
    _, parts = parse_multipart(response)
    assert len(parts) == len(stored.order)


@pytest.mark.parametrize(
    "accept",
    [
        "application/dicom",  # single part is for one instance only (NEG-11)
        "application/json",
        'multipart/related; type="application/octet-stream"',
        "multipart/related; type=application/dicom; transfer-syntax=not-a-uid",
        "*/*; q=0",
        f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_BASELINE}',
    ],
)
async def test_not_acceptable(client: httpx.AsyncClient, stored: Stored, accept: str) -> None:
    response = await client.get(f"{ROOT}/studies/{stored.study}", headers={"Accept": accept})
    assert response.status_code == 406, accept
    assert response.headers["content-type"] == "application/problem+json"


async def test_transfer_syntax_needing_transcoding_is_406(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    """NEG-09: an EVRLE instance asked for as JPEG baseline (we decode, we do not encode)."""
    series, sop = stored.order[0]
    for accept in (
        f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_BASELINE}',
        f"application/dicom; transfer-syntax={JPEG_BASELINE}",
    ):
        response = await client.get(
            f"{ROOT}/studies/{stored.study}/series/{series}/instances/{sop}",
            headers={"Accept": accept},
        )
        assert response.status_code == 406
        assert JPEG_BASELINE in response.json()["detail"]


async def test_accept_query_parameter_takes_precedence(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    """NEG-05: the ``accept`` query parameter wins over the header."""
    response = await client.get(
        f"{ROOT}/studies/{stored.study}",
        params={"accept": DICOMWEB_CLIENT_ACCEPT},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    assert len(parse_multipart(response)[1]) == len(stored.order)

    series, sop = stored.order[0]
    url = f"{ROOT}/studies/{stored.study}/series/{series}/instances/{sop}"
    response = await client.get(
        url, params={"accept": "application/dicom"}, headers={"Accept": DICOMWEB_CLIENT_ACCEPT}
    )
    assert response.headers["content-type"] == f"application/dicom; transfer-syntax={EVRLE}"
    assert response.content == stored.raws[sop]

    # wildcards are not allowed in the parameter (NEG-05): the header decides
    response = await client.get(
        url, params={"accept": "*/*"}, headers={"Accept": "application/dicom"}
    )
    assert response.headers["content-type"].startswith("application/dicom;")


async def test_q_weights(client: httpx.AsyncClient, stored: Stored) -> None:
    series, sop = stored.order[0]
    url = f"{ROOT}/studies/{stored.study}/series/{series}/instances/{sop}"
    response = await client.get(
        url, headers={"Accept": f"{DICOMWEB_CLIENT_ACCEPT}; q=0.4, application/dicom; q=0.9"}
    )
    assert response.headers["content-type"].startswith("application/dicom;")
    response = await client.get(
        url, headers={"Accept": f"{DICOMWEB_CLIENT_ACCEPT}; q=0.9, application/dicom; q=0.4"}
    )
    assert response.headers["content-type"].startswith("multipart/related;")
    # the preferred syntax cannot be produced: the next acceptable range is used
    response = await client.get(
        url,
        headers={
            "Accept": f"application/dicom; transfer-syntax={JPEG_BASELINE}, "
            f"{DICOMWEB_CLIENT_ACCEPT}; q=0.1"
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("multipart/related;")


def test_accept_parser() -> None:
    """NEG-01: quoted and unquoted values, case, whitespace, commas inside quotes, bad ranges."""
    [r] = parse_accept('multipart/related ; TYPE = "application/dicom" ; q = 0.5')
    assert (r.essence, r.params, r.q) == ("multipart/related", {"type": "application/dicom"}, 0.5)
    ranges = parse_accept('a/b; x="1,2", c/d;q=2, e/f;q=0.25, g, h/i; q')
    assert [(r.essence, r.params, r.q) for r in ranges] == [
        ("a/b", {"x": "1,2"}, 1.0),
        ("e/f", {}, 0.25),
    ]
    [rep] = acceptable_dicom(OHIF_ACCEPT, single_part=True)
    assert (rep.packaging, rep.transfer_syntax) == (Packaging.MULTIPART, "*")
    [rep] = acceptable_dicom("application/dicom; transfer-syntax=1.2.3", single_part=True)
    assert (rep.packaging, rep.transfer_syntax) == (Packaging.SINGLE, "1.2.3")


# --- 404 / 400 (WADO-05, GEN-02) ---


async def test_unknown_resources_are_404(client: httpx.AsyncClient, stored: Stored) -> None:
    other = generate_uid()
    study = stored.study
    (series_a, sop_a), (series_b, _) = stored.order[0], stored.order[-1]
    assert series_a != series_b
    for url in (
        f"{ROOT}/studies/{other}",
        f"{ROOT}/studies/{study}/series/{other}",
        f"{ROOT}/studies/{other}/series/{series_a}",  # series under another study
        f"{ROOT}/studies/{study}/series/{series_a}/instances/{other}",
        f"{ROOT}/studies/{study}/series/{series_b}/instances/{sop_a}",  # under another series
        f"{ROOT}/studies/{other}/series/{series_a}/instances/{sop_a}",
    ):
        response = await client.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("bad", ["1.02.3", "abc", "1..2", "1." + "2" * 70])
async def test_malformed_uids_are_400(client: httpx.AsyncClient, stored: Stored, bad: str) -> None:
    series, sop = stored.order[0]
    for url in (
        f"{ROOT}/studies/{bad}",
        f"{ROOT}/studies/{stored.study}/series/{bad}",
        f"{ROOT}/studies/{stored.study}/series/{series}/instances/{bad}",
        f"{ROOT}/studies/{bad}/series/{series}/instances/{sop}",
    ):
        response = await client.get(url)
        assert response.status_code == 400, url


# --- transfer syntaxes: stored bytes, partial content (WADO-02/03) ---


def _jpeg_instance(study: str, series: str) -> bytes:
    path = str(corpus_path("SC_rgb_jpeg_dcmtk.dcm"))
    assert isinstance(path, str)
    ds = dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesNumber, ds.InstanceNumber = 1, 9
    template = make_dataset()  # same patient as the rest of the study (STOW-10)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
        setattr(ds, keyword, template[keyword].value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _video_instance(study: str, series: str) -> bytes:
    """An MPEG-4 instance: its pixel data is a video stream no decoder here reads (FRM-06)."""
    ds = make_dataset(StudyInstanceUID=study, SeriesInstanceUID=series, InstanceNumber=8)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.77.1.4.1")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "YBR_PARTIAL_420"
    ds.PlanarConfiguration = 0
    ds.NumberOfFrames = 2
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3 not really an MPEG-4 stream"])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    return to_bytes(ds)


async def test_mixed_syntaxes_partial_content(client: httpx.AsyncClient, stored: Stored) -> None:
    """WADO-02/03, NEG-07/09: lossy data goes out as stored by default and decoded when EVRLE
    is named; what cannot be produced (encoding into JPEG, decoding video) is left out with 206 +
    Warning; ``*`` sends everything as stored."""
    jpeg_raw = _jpeg_instance(stored.study, stored.series[0])
    await _store(client, [jpeg_raw], stored.study)
    url = f"{ROOT}/studies/{stored.study}"
    total = len(stored.order) + 1

    # no syntax asked for: EVRLE, but the only pixels of the JPEG instance are lossy (NEG-07)
    response = await client.get(url, headers={"Accept": DICOMWEB_CLIENT_ACCEPT})
    assert response.status_code == 200
    syntax, parts = parse_multipart(response)
    assert syntax is None  # parts differ, so no transfer-syntax on the top-level type
    assert len(parts) == total
    jpeg_part = parts[3]  # series 1: instances 1, 2, 3, then 9
    assert (
        jpeg_part.headers["Content-Type"] == f"application/dicom; transfer-syntax={JPEG_BASELINE}"
    )
    assert jpeg_part.payload == jpeg_raw
    _check_parts(parts[:3] + parts[4:], stored, stored.order)

    # EVRLE named: the JPEG instance is decoded (WADO-02)
    response = await client.get(
        url, headers={"Accept": f"{DICOMWEB_CLIENT_ACCEPT}; transfer-syntax={EVRLE}"}
    )
    assert response.status_code == 200
    syntax, parts = parse_multipart(response)
    assert syntax == EVRLE
    _check_parts(parts[:3] + parts[4:], stored, stored.order)
    decoded = dcmread(io.BytesIO(parts[3].payload))
    original = dcmread(io.BytesIO(jpeg_raw))
    assert decoded.file_meta.TransferSyntaxUID == EVRLE
    assert decoded.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(decoded.pixel_array, original.pixel_array)

    response = await client.get(url, headers={"Accept": OHIF_ACCEPT})
    assert response.status_code == 200
    syntax, parts = parse_multipart(response)
    assert syntax is None
    assert len(parts) == total
    assert parts[3].payload == jpeg_raw

    response = await client.get(
        url, headers={"Accept": f"{DICOMWEB_CLIENT_ACCEPT}; transfer-syntax={JPEG_BASELINE}"}
    )
    assert response.status_code == 206
    assert response.headers["warning"].startswith(f'299 lightbox "{total - 1} of {total}')
    syntax, parts = parse_multipart(response)
    assert syntax == JPEG_BASELINE
    assert [p.payload for p in parts] == [jpeg_raw]

    # equal q: prefer the range that sends more instances, then the one transcoding fewer
    response = await client.get(
        url,
        headers={
            "Accept": f"{DICOMWEB_CLIENT_ACCEPT}; transfer-syntax={JPEG_BASELINE}, "
            f"{DICOMWEB_CLIENT_ACCEPT}; transfer-syntax={EVRLE}"
        },
    )
    assert response.status_code == 200
    assert parse_multipart(response)[0] == EVRLE
    response = await client.get(
        url,
        headers={"Accept": f"{DICOMWEB_CLIENT_ACCEPT}; transfer-syntax={EVRLE}, {OHIF_ACCEPT}"},
    )
    assert parse_multipart(response)[1][3].payload == jpeg_raw  # "*" transcodes nothing

    # a video instance cannot be decoded: left out of an EVRLE answer (WADO-03)
    video_raw = _video_instance(stored.study, stored.series[0])
    await _store(client, [video_raw], stored.study)
    response = await client.get(
        url, headers={"Accept": f"{DICOMWEB_CLIENT_ACCEPT}; transfer-syntax={EVRLE}"}
    )
    assert response.status_code == 206
    assert response.headers["warning"].startswith(f'299 lightbox "1 of {total + 1} instances')
    assert len(parse_multipart(response)[1]) == total
    video_url = (
        f"{url}/series/{stored.series[0]}/instances/{dcmread(io.BytesIO(video_raw)).SOPInstanceUID}"
    )
    response = await client.get(
        video_url, headers={"Accept": f"application/dicom; transfer-syntax={EVRLE}"}
    )
    assert response.status_code == 406
    response = await client.get(video_url, headers={"Accept": "application/dicom"})
    assert response.status_code == 200  # NEG-07: lossy only, sent as stored
    assert response.content == video_raw


async def test_implicit_vr_goes_out_as_explicit(client: httpx.AsyncClient, stored: Stored) -> None:
    """NEG-08: Implicit VR Little Endian is never sent; ``*`` and the default give EVRLE.

    (Before transcoding existed, this test pinned the stored Implicit VR bytes for ``*``.)
    """
    ds = make_dataset(StudyInstanceUID=stored.study, SeriesInstanceUID=generate_uid())
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    raw = to_bytes(ds)
    await _store(client, [raw])
    url = f"{ROOT}/studies/{stored.study}/series/{ds.SeriesInstanceUID}"
    payloads = []
    for accept in (None, OHIF_ACCEPT, f"{DICOMWEB_CLIENT_ACCEPT}; transfer-syntax={EVRLE}"):
        request = client.build_request("GET", url)
        if accept is not None:
            request.headers["accept"] = accept
        response = await client.send(request)
        assert response.status_code == 200, accept
        syntax, [part] = parse_multipart(response)
        assert syntax == EVRLE
        assert part.headers["Content-Type"] == f"application/dicom; transfer-syntax={EVRLE}"
        assert part.headers["Content-Length"] == str(len(part.payload))
        payloads.append(part.payload)
    assert payloads[0] == payloads[1] == payloads[2]
    out = dcmread(io.BytesIO(payloads[0]))
    assert out.preamble == bytes(128)
    assert out.file_meta.TransferSyntaxUID == EVRLE
    assert out.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert not out.is_implicit_VR
    assert out.PatientName == ds.PatientName
    assert out.PixelData == ds.PixelData
    response = await client.get(
        url,
        headers={"Accept": f"{DICOMWEB_CLIENT_ACCEPT}; transfer-syntax={ImplicitVRLittleEndian}"},
    )
    assert response.status_code == 406


async def test_blob_without_preamble_gets_one(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Blobs stored without preamble + DICM go out as complete PS3.10 files."""
    ds = make_dataset()
    raw = to_bytes(ds)
    bare = raw[132:]  # File Meta first, as some STOW clients send it
    await _store(client, [bare])
    url = (
        f"{ROOT}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    response = await client.get(url, headers={"Accept": "application/dicom"})
    assert response.status_code == 200
    assert response.content == bytes(128) + b"DICM" + bare
    assert response.headers["content-length"] == str(len(bare) + 132)
    _, [part] = parse_multipart(await client.get(url))
    assert part.payload == bytes(128) + b"DICM" + bare
    assert dcmread(io.BytesIO(part.payload)).SOPInstanceUID == ds.SOPInstanceUID

    # read in chunks smaller than the preamble: the prefix check spans chunks
    other = make_dataset()
    other_raw = to_bytes(other)
    await _store(client, [other_raw])
    retrieve = RetrieveService(services.db, services.store, chunk_size=50)
    for instance, expected in ((ds, bytes(128) + b"DICM" + bare), (other, other_raw)):
        [ref] = await retrieve.resolve(
            Target(instance.StudyInstanceUID, instance.SeriesInstanceUID, instance.SOPInstanceUID)
        )
        payload = await retrieve.open(ref)
        chunks = [chunk async for chunk in payload.chunks]
        assert b"".join(chunks) == expected
        assert payload.length == len(expected)
        assert len(chunks) > 2


async def test_study_sent_with_content_length_when_every_part_length_is_known(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Blobs with and without the PS3.10 prefix: the index records which at ingest, so the
    body's length is announced up front (no chunked coding) and is exact. Rows indexed before
    that was recorded, and instances transcoded on the way, are streamed in chunks; a blob that
    no longer begins as its row says breaks the response instead of sending a wrong length."""
    study, series = str(generate_uid()), str(generate_uid())
    datasets = [
        make_dataset(StudyInstanceUID=study, SeriesInstanceUID=series, InstanceNumber=n)
        for n in (1, 2, 3)
    ]
    raws = [to_bytes(ds) for ds in datasets]
    sent = [raws[0], raws[1][132:], raws[2]]  # the second as some STOW clients send it
    await _store(client, sent)
    expected = [raws[0], bytes(128) + b"DICM" + raws[1][132:], raws[2]]
    async with services.db.read() as conn:
        rows = await conn.execute(select(Instance.sop_uid, Instance.part10_prefix))
        flags = {str(sop): prefixed for sop, prefixed in rows.all()}
    assert [bool(flags[str(ds.SOPInstanceUID)]) for ds in datasets] == [True, False, True]

    url = f"{ROOT}/studies/{study}"
    for accept in (DICOMWEB_CLIENT_ACCEPT, f"{DICOMWEB_CLIENT_ACCEPT}; transfer-syntax=*"):
        response = await client.get(url, headers={"Accept": accept})
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(response.content))
        assert [p.payload for p in parse_multipart(response)[1]] == expected

    # rows stored before the prefix was recorded: streamed, the same parts
    async with services.db.write() as conn:
        await conn.execute(update(Instance).values(part10_prefix=None))
    response = await client.get(url, headers={"Accept": DICOMWEB_CLIENT_ACCEPT})
    assert "content-length" not in response.headers
    assert [p.payload for p in parse_multipart(response)[1]] == expected

    # a row that says "prefixed" for a blob without the prefix: the blob is not sent as such
    async with services.db.write() as conn:
        await conn.execute(update(Instance).values(part10_prefix=True))
    [ref] = await services.retrieve.resolve(Target(study, series, str(datasets[1].SOPInstanceUID)))
    with pytest.raises(StorageError, match="does not begin"):
        await services.retrieve.open(ref)
    async with services.db.write() as conn:
        bare = Instance.sop_uid == str(datasets[1].SOPInstanceUID)
        await conn.execute(update(Instance).where(bare).values(part10_prefix=False))

    # an instance transcoded on the way: its length is unknown until encoded, so chunked;
    # unless it is the first (encoded before the response starts) and the others are known
    implicit = make_dataset(StudyInstanceUID=study, SeriesInstanceUID=series, InstanceNumber=9)
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    await _store(client, [to_bytes(implicit)])
    other = f"{ROOT}/studies/{study}/series/{series}/instances/{implicit.SOPInstanceUID}"
    for target, known in ((url, False), (other, True)):
        response = await client.get(target, headers={"Accept": DICOMWEB_CLIENT_ACCEPT})
        assert response.status_code == 200
        assert response.headers.get("content-length") == (
            str(len(response.content)) if known else None
        )
        [*_, last] = parse_multipart(response)[1]
        assert dcmread(io.BytesIO(last.payload)).SOPInstanceUID == implicit.SOPInstanceUID

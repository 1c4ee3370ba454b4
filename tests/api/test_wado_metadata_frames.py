"""WADO-RS metadata and frames over the ASGI app, on PostgreSQL and SQLite (RES-04/08, META/FRM)."""

import io
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import pack_bits
from pydicom.uid import generate_uid
from sqlalchemy import select

from app.index.models import Instance
from app.services.container import Services
from tests.corpus import corpus_path
from tests.factories import make_dataset, multipart, stow_headers, to_bytes
from tests.multipart import parse_multipart

ROOT = "/dicom-web"
BASE = f"http://testserver{ROOT}"
EVRLE = "1.2.840.10008.1.2.1"
OHIF_FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"
OCTET = 'multipart/related; type="application/octet-stream"'


async def _store(client: httpx.AsyncClient, raws: list[bytes]) -> None:
    response = await client.post(f"{ROOT}/studies", content=multipart(raws), headers=stow_headers())
    assert response.status_code == 200, response.text


def _instance_path(study: str, series: str, sop: str) -> str:
    return f"{ROOT}/studies/{study}/series/{series}/instances/{sop}"


# --- metadata (RES-04, META-01/02/04) ---


@dataclass
class Study:
    uid: str
    order: list[tuple[str, str]]  # (series, sop) in WADO-01 order


@pytest.fixture
async def study(client: httpx.AsyncClient) -> Study:
    uid = str(generate_uid())
    series = [str(generate_uid()), str(generate_uid())]
    plan = [(1, 2), (1, 1), (0, 3), (0, 1)]
    datasets = [
        make_dataset(
            StudyInstanceUID=uid,
            SeriesInstanceUID=series[s],
            SeriesNumber=s + 1,
            InstanceNumber=n,
        )
        for s, n in plan
    ]
    await _store(client, [to_bytes(ds) for ds in datasets])
    ordered = sorted(datasets, key=lambda ds: (ds.SeriesNumber, ds.InstanceNumber))
    return Study(uid, [(ds.SeriesInstanceUID, ds.SOPInstanceUID) for ds in ordered])


async def _stored_metadata(services: Services) -> dict[str, object]:
    async with services.db.read() as conn:
        rows = (await conn.execute(select(Instance.sop_uid, Instance.metadata_json))).all()
    return {
        sop: orjson.loads(raw.replace(b'"BulkDataURI":"', f'"BulkDataURI":"{BASE}'.encode()))
        for sop, raw in rows
    }


async def test_study_metadata(client: httpx.AsyncClient, services: Services, study: Study) -> None:
    response = await client.get(
        f"{ROOT}/studies/{study.uid}/metadata", headers={"Accept": "application/dicom+json"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    body = response.json()
    expected = await _stored_metadata(services)
    assert [item["00080018"]["Value"][0] for item in body] == [sop for _, sop in study.order]
    assert body == [expected[sop] for _, sop in study.order]
    for item, (series, sop) in zip(body, study.order, strict=True):
        assert "00020010" not in item  # no File Meta (META-02)
        assert item["7FE00010"] == {
            "vr": "OW",
            "BulkDataURI": f"{BASE}{_instance_path(study.uid, series, sop)[len(ROOT) :]}"
            "/bulkdata/7FE00010",
        }


async def test_series_and_instance_metadata(client: httpx.AsyncClient, study: Study) -> None:
    series = study.order[-1][0]
    response = await client.get(f"{ROOT}/studies/{study.uid}/series/{series}/metadata")
    assert response.status_code == 200
    assert [item["00080018"]["Value"][0] for item in response.json()] == [
        sop for s, sop in study.order if s == series
    ]
    series, sop = study.order[0]
    for accept in ("application/json", "*/*", None):
        request = client.build_request("GET", f"{_instance_path(study.uid, series, sop)}/metadata")
        if accept is None:
            del request.headers["accept"]
        else:
            request.headers["accept"] = accept
        response = await client.send(request)
        assert response.status_code == 200, accept
        [item] = response.json()  # an array even for one instance (META-01)
        assert item["00080018"]["Value"] == [sop]


async def test_metadata_etag(client: httpx.AsyncClient, study: Study) -> None:
    url = f"{ROOT}/studies/{study.uid}/metadata"
    first = await client.get(url)
    etag = first.headers["etag"]
    assert etag.startswith('"')
    again = await client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert (await client.get(url, headers={"If-None-Match": f'"x", W/{etag}'})).status_code == 304
    assert (await client.get(url, headers={"If-None-Match": '"other"'})).status_code == 200
    # another base URL means other BulkDataURIs: another tag
    other = await client.get(url, headers={"Host": "elsewhere"})
    assert other.headers["etag"] != etag
    # a new instance changes the study's tag
    series, _ = study.order[0]
    await _store(
        client,
        [to_bytes(make_dataset(StudyInstanceUID=study.uid, SeriesInstanceUID=series))],
    )
    assert (await client.get(url, headers={"If-None-Match": etag})).status_code == 200


async def test_metadata_errors(client: httpx.AsyncClient, study: Study) -> None:
    url = f"{ROOT}/studies/{study.uid}/metadata"
    for accept in ("application/dicom", 'multipart/related; type="application/dicom"', "*/*;q=0"):
        response = await client.get(url, headers={"Accept": accept})
        assert response.status_code == 406, accept
        assert response.headers["content-type"] == "application/problem+json"
    other = generate_uid()
    series, sop = study.order[0]
    for missing in (
        f"{ROOT}/studies/{other}/metadata",
        f"{ROOT}/studies/{study.uid}/series/{other}/metadata",
        f"{_instance_path(study.uid, series, other)}/metadata",
        f"{_instance_path(study.uid, study.order[-1][0], sop)}/metadata",
    ):
        assert (await client.get(missing)).status_code == 404, missing
    assert (await client.get(f"{ROOT}/studies/1.02/metadata")).status_code == 400


# --- frames (RES-08, FRM-01..06) ---


async def _store_file(client: httpx.AsyncClient, raw: bytes) -> tuple[str, Dataset]:
    ds = dcmread(io.BytesIO(raw))
    await _store(client, [raw])
    return _instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID), ds


def _corpus(name: str) -> bytes:
    return Path(corpus_path(name)).read_bytes()


ENCAPSULATED = [
    ("SC_rgb_rle_2frame.dcm", "image/dicom-rle"),
    ("emri_small_RLE.dcm", "image/dicom-rle"),
    ("emri_small_jpeg_2k_lossless.dcm", "image/jp2"),
    ("emri_small_jpeg_ls_lossless.dcm", "image/jls"),
]


@pytest.mark.parametrize(("name", "media_type"), ENCAPSULATED)
async def test_encapsulated_frames_as_stored(
    client: httpx.AsyncClient, name: str, media_type: str
) -> None:
    raw = _corpus(name)
    url, ds = await _store_file(client, raw)
    syntax = str(ds.file_meta.TransferSyntaxUID)
    count = int(ds.NumberOfFrames)
    expected = list(generate_frames(ds.PixelData, number_of_frames=count))
    asked = [count, 1] if count > 1 else [1]
    for accept in (OHIF_FRAMES, f'{OCTET}; transfer-syntax="*"', 'multipart/related; type="*/*"'):
        response = await client.get(
            f"{url}/frames/{','.join(map(str, asked))}", headers={"Accept": accept}
        )
        assert response.status_code == 200, (accept, response.text)
        part_type, top_syntax, parts = parse_multipart(response)
        assert (part_type, top_syntax) == (media_type, syntax)
        assert [p.payload for p in parts] == [expected[n - 1] for n in asked]
        for part, n in zip(parts, asked, strict=True):
            assert part.headers["Content-Type"] == f"{media_type}; transfer-syntax={syntax}"
            assert part.headers["Content-Location"] == f"{BASE}{url[len(ROOT) :]}/frames/{n}"
    # the stored encoding asked for by its own media type (its NEG-12 default syntax, or named)
    response = await client.get(
        f"{url}/frames/1",
        headers={"Accept": f"multipart/related; type={media_type}; transfer-syntax={syntax}"},
    )
    assert response.status_code == 200
    assert parse_multipart(response)[2][0].payload == expected[0]
    # uncompressed frames are decoded (FRM-05), equal to pydicom's decoding
    pixels = ds.pixel_array
    decoded = [pixels] if count == 1 else list(pixels)
    for accept in (OCTET, f"{OCTET}; transfer-syntax={EVRLE}"):
        response = await client.get(
            f"{url}/frames/{','.join(map(str, asked))}", headers={"Accept": accept}
        )
        assert response.status_code == 200, accept
        part_type, top_syntax, parts = parse_multipart(response)
        assert (part_type, top_syntax) == ("application/octet-stream", EVRLE)
        assert [p.payload for p in parts] == [decoded[n - 1].tobytes() for n in asked]
    # an encoding we would have to produce: 406, naming what can be had
    for accept in ("multipart/related; type=image/jpeg", f"{OCTET}; transfer-syntax=1.2.3"):
        response = await client.get(f"{url}/frames/1", headers={"Accept": accept})
        assert response.status_code == 406, accept
        assert syntax in response.json()["detail"]


def _native_frames(ds: Dataset) -> list[bytes]:
    pixels = ds.pixel_array
    count = int(getattr(ds, "NumberOfFrames", 1) or 1)
    frames = [pixels] if count == 1 else list(pixels)
    if ds.BitsAllocated == 1:
        return [pack_bits(frame) for frame in frames]
    return [np.ascontiguousarray(f).astype(f.dtype.newbyteorder("<")).tobytes() for f in frames]


@pytest.mark.parametrize("name", ["emri_small.dcm", "liver.dcm", "MR_small_bigendian.dcm"])
async def test_native_frames(client: httpx.AsyncClient, name: str) -> None:
    url, ds = await _store_file(client, _corpus(name))
    expected = _native_frames(ds)
    asked = list(range(len(expected), 0, -1))  # any order, parts in the order asked
    for accept in (OCTET, f"{OCTET}; transfer-syntax={EVRLE}", OHIF_FRAMES, None):
        request = client.build_request("GET", f"{url}/frames/{','.join(map(str, asked))}")
        if accept is None:
            del request.headers["accept"]
        else:
            request.headers["accept"] = accept
        response = await client.send(request)
        assert response.status_code == 200, (accept, response.text)
        part_type, syntax, parts = parse_multipart(response)
        assert (part_type, syntax) == ("application/octet-stream", EVRLE)
        assert [p.payload for p in parts] == [expected[n - 1] for n in asked]
        assert {p.headers["Content-Type"] for p in parts} == {
            f"application/octet-stream; transfer-syntax={EVRLE}"
        }


async def test_bit_packed_frames_are_repacked(client: httpx.AsyncClient) -> None:
    """FRM-03: 3x3 one-bit frames share bytes; each goes out starting at bit 0."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 2, size=(5, 3, 3), dtype=np.uint8)
    ds = make_dataset(rows=3, columns=3, frames=5)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    ds.PixelData = pack_bits(pixels)
    url, _ = await _store_file(client, to_bytes(ds))
    response = await client.get(f"{url}/frames/2,5,1", headers={"Accept": OCTET})
    assert response.status_code == 200, response.text
    _, _, parts = parse_multipart(response)
    assert [p.payload for p in parts] == [pack_bits(pixels[n - 1]) for n in (2, 5, 1)]


async def test_frame_list_errors(client: httpx.AsyncClient) -> None:
    url, _ = await _store_file(client, _corpus("emri_small.dcm"))  # 10 frames
    for frames in ("0", "1,,2", "1,1", "-1", "a", "1;2", "1, 2", "2,1,2"):
        response = await client.get(f"{url}/frames/{frames}")
        assert response.status_code == 400, frames
    for frames in ("11", "1,11"):
        response = await client.get(f"{url}/frames/{frames}")
        assert response.status_code == 404, frames
        assert "frame 11" in response.json()["detail"]
    response = await client.get(f"{url}/frames/3%2C1")
    assert response.status_code == 200
    assert len(parse_multipart(response)[2]) == 2


async def test_frames_not_found(client: httpx.AsyncClient) -> None:
    ds = make_dataset()
    del ds.PixelData
    url, _ = await _store_file(client, to_bytes(ds))
    response = await client.get(f"{url}/frames/1")
    assert response.status_code == 404
    assert "no pixel data" in response.json()["detail"]
    other = generate_uid()
    response = await client.get(f"{url.rsplit('/', 1)[0]}/{other}/frames/1")
    assert response.status_code == 404
    assert (await client.get(f"{url.rsplit('/', 1)[0]}/1.02/frames/1")).status_code == 400


async def test_small_frame_responses_whole_large_ones_streamed(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few small frames go out whole with a Content-Length; past the limit the same parts
    are streamed (no Content-Length), whichever part crosses it."""
    from app.api.wado import pixels as wado

    url, ds = await _store_file(client, _corpus("emri_small.dcm"))
    expected = _native_frames(ds)  # 10 frames of 8 KiB
    asked = "3,1,10,2"
    whole = await client.get(f"{url}/frames/{asked}", headers={"Accept": OHIF_FRAMES})
    assert whole.status_code == 200
    assert whole.headers["content-length"] == str(len(whole.content))
    single = await client.get(f"{url}/frames/5", headers={"Accept": OHIF_FRAMES})
    assert single.headers["content-length"] == str(len(single.content))
    assert [p.payload for p in parse_multipart(single)[2]] == [expected[4]]
    for limit in (0, len(expected[0]), 2 * len(expected[0]) + 1):
        monkeypatch.setattr(wado, "BUFFERED_FRAME_BYTES", limit)
        streamed = await client.get(f"{url}/frames/{asked}", headers={"Accept": OHIF_FRAMES})
        assert streamed.status_code == 200
        assert "content-length" not in streamed.headers
        for response in (whole, streamed):
            part_type, syntax, parts = parse_multipart(response)
            assert (part_type, syntax) == ("application/octet-stream", EVRLE)
            assert [p.payload for p in parts] == [expected[n - 1] for n in (3, 1, 10, 2)]
            assert [p.headers["Content-Location"] for p in parts] == [
                f"{BASE}{url[len(ROOT) :]}/frames/{n}" for n in (3, 1, 10, 2)
            ]

"""WADO-RS /pixeldata, study/series /bulkdata, byte ranges, single-part frames, strict Accept,
legacy media type names and gzipped metadata, on PostgreSQL and SQLite.

RES-08, FRM-05/07, BULK-03/04, NEG-04/11/13, GEN-08.
"""

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import MPEG4HP41, UID, RLELossless, generate_uid

from app.config import Settings
from tests.conftest import app_client, make_settings
from tests.corpus import corpus_path
from tests.factories import make_dataset, multipart, stow_headers, to_bytes
from tests.multipart import parse_multipart

ROOT = "/dicom-web"
ORIGIN = "http://t"
EVRLE = "1.2.840.10008.1.2.1"
RLE = str(RLELossless)
OCTET = "application/octet-stream"
MULTI_OCTET = f'multipart/related; type="{OCTET}"'


def _path(ds: Dataset) -> str:
    return (
        f"{ROOT}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


async def _store(http: httpx.AsyncClient, *datasets: Dataset) -> None:
    response = await http.post(
        f"{ROOT}/studies",
        content=multipart([to_bytes(ds) for ds in datasets]),
        headers=stow_headers(),
    )
    assert response.status_code == 200, response.text


@dataclass
class Study:
    uid: str
    native: Dataset  # series 1: 3 native frames
    rle: Dataset  # series 1: 2 RLE frames
    other: Dataset  # series 2: 1 native frame, no bulk beyond pixel data
    no_pixels: Dataset  # series 2: no pixel data


def _rle(study: str, series: str) -> Dataset:
    ds = make_dataset(StudyInstanceUID=study, SeriesInstanceUID=series, InstanceNumber=2, frames=2)
    ds.compress(RLELossless, generate_instance_uid=False)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


async def _study(http: httpx.AsyncClient) -> Study:
    uid = str(generate_uid())
    series = [str(generate_uid()), str(generate_uid())]
    native = make_dataset(StudyInstanceUID=uid, SeriesInstanceUID=series[0], frames=3)
    rle = _rle(uid, series[0])
    other = make_dataset(
        StudyInstanceUID=uid, SeriesInstanceUID=series[1], SeriesNumber=2, rows=4, columns=4
    )
    no_pixels = make_dataset(StudyInstanceUID=uid, SeriesInstanceUID=series[1], SeriesNumber=2)
    no_pixels.InstanceNumber = 2
    del no_pixels.PixelData
    await _store(http, rle, other, native, no_pixels)
    return Study(uid, native, rle, other, no_pixels)


def _corpus(name: str) -> bytes:
    return Path(corpus_path(name)).read_bytes()


def _frames(ds: Dataset) -> list[bytes]:
    pixels = ds.pixel_array
    frames = list(pixels) if int(ds.get("NumberOfFrames", 1)) > 1 else [pixels]
    return [np.ascontiguousarray(f).tobytes() for f in frames]


# --- /pixeldata (RES-08, FRM-07) ---


async def test_pixeldata(settings: Settings) -> None:
    async with app_client(settings) as (_, http):
        study = await _study(http)
        native, rle, other = study.native, study.rle, study.other
        # instance: one part per frame, Content-Location .../frames/n, decoded (FRM-05)
        response = await http.get(f"{_path(rle)}/pixeldata", headers={"Accept": MULTI_OCTET})
        assert response.status_code == 200, response.text
        part_type, syntax, parts = parse_multipart(response)
        assert (part_type, syntax) == (OCTET, EVRLE)
        assert [p.payload for p in parts] == _frames(rle)
        assert [p.headers["Content-Location"] for p in parts] == [
            f"{ORIGIN}{_path(rle)}/frames/{n}" for n in (1, 2)
        ]
        # as stored: RLE frames labelled image/dicom-rle (FRM-05, Table 8.7.3-5)
        response = await http.get(
            f"{_path(rle)}/pixeldata",
            headers={
                "Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"
            },
        )
        part_type, syntax, parts = parse_multipart(response)
        assert (part_type, syntax) == ("image/dicom-rle", RLE)
        assert [p.payload for p in parts] == list(
            generate_frames(rle.PixelData, number_of_frames=2)
        )

        # series: every frame of every instance, WADO-01 order
        url = f"{ROOT}/studies/{study.uid}/series/{native.SeriesInstanceUID}/pixeldata"
        response = await http.get(url, headers={"Accept": MULTI_OCTET})
        assert response.status_code == 200, response.text
        _, syntax, parts = parse_multipart(response)
        assert syntax == EVRLE
        assert [p.payload for p in parts] == _frames(native) + _frames(rle)
        # study: the instance without pixel data is skipped
        response = await http.get(f"{ROOT}/studies/{study.uid}/pixeldata")
        assert response.status_code == 200
        part_type, syntax, parts = parse_multipart(response)
        assert part_type == OCTET  # the first part's type (native frames)
        assert syntax is None  # native EVRLE and stored RLE parts
        assert len(parts) == 3 + 2 + 1
        assert parts[3].headers["Content-Type"] == f"image/dicom-rle; transfer-syntax={RLE}"
        assert parts[-1].payload == _frames(other)[0]
        # a single frame asked for plainly: single part (NEG-11)
        response = await http.get(f"{_path(other)}/pixeldata", headers={"Accept": OCTET})
        assert response.headers["content-type"] == f"{OCTET}; transfer-syntax={EVRLE}"
        assert response.content == _frames(other)[0]

        # errors
        assert (await http.get(f"{_path(study.no_pixels)}/pixeldata")).status_code == 404
        unknown = f"{ROOT}/studies/{generate_uid()}/pixeldata"
        assert (await http.get(unknown)).status_code == 404
        assert (await http.get(f"{ROOT}/studies/1.02/pixeldata")).status_code == 400
        response = await http.get(f"{_path(rle)}/pixeldata", headers={"Accept": "image/jpeg"})
        assert response.status_code == 406
        response = await http.get(
            f"{_path(native)}/pixeldata", headers={"Accept": OCTET}
        )  # 3 frames cannot be one single part
        assert response.status_code == 406


async def test_pixeldata_partial_with_video(settings: Settings) -> None:
    """WADO-03 for pixel data: a video instance is left out (206 + Warning, FRM-06)."""
    async with app_client(settings) as (_, http):
        study = await _study(http)
        video = make_dataset(
            StudyInstanceUID=study.uid, SeriesInstanceUID=study.native.SeriesInstanceUID
        )
        video.SOPClassUID = video.file_meta.MediaStorageSOPClassUID = UID(
            "1.2.840.10008.5.1.4.1.1.77.1.4.1"
        )
        video.InstanceNumber = 9
        video.BitsAllocated, video.BitsStored, video.HighBit = 8, 8, 7
        video.NumberOfFrames = 2
        video.PixelData = encapsulate([b"\x00\x00\x01\xb3 not really an MPEG-4 stream"])
        video["PixelData"].VR = "OB"
        video.file_meta.TransferSyntaxUID = MPEG4HP41
        await _store(http, video)
        response = await http.get(f"{ROOT}/studies/{study.uid}/pixeldata")
        assert response.status_code == 206
        assert response.headers["warning"].startswith('299 lightbox "1 of 4 instances')
        assert len(parse_multipart(response)[2]) == 6
        assert (await http.get(f"{_path(video)}/pixeldata")).status_code == 406
        assert (await http.get(f"{_path(video)}/frames/1")).status_code == 406


# --- frames: single part, legacy names (NEG-11, NEG-13) ---


async def test_single_part_frames_and_legacy_names(settings: Settings) -> None:
    async with app_client(settings) as (_, http):
        study = await _study(http)
        rle, native = study.rle, study.native
        response = await http.get(f"{_path(rle)}/frames/2", headers={"Accept": OCTET})
        assert response.status_code == 200
        assert response.headers["content-type"] == f"{OCTET}; transfer-syntax={EVRLE}"
        assert response.headers["content-location"] == f"{ORIGIN}{_path(rle)}/frames/2"
        assert response.content == _frames(rle)[1]
        stored = list(generate_frames(rle.PixelData, number_of_frames=2))
        response = await http.get(f"{_path(rle)}/frames/1", headers={"Accept": "image/dicom-rle"})
        assert response.headers["content-type"] == f"image/dicom-rle; transfer-syntax={RLE}"
        assert response.content == stored[0]
        # several frames cannot be one single part: the multipart range is used instead
        response = await http.get(
            f"{_path(native)}/frames/1,2", headers={"Accept": f"{OCTET}, {MULTI_OCTET}; q=0.5"}
        )
        assert response.status_code == 200
        assert len(parse_multipart(response)[2]) == 2
        assert (
            await http.get(f"{_path(native)}/frames/1,2", headers={"Accept": OCTET})
        ).status_code == 406

        # NEG-13: legacy names are understood; the current names are sent
        for accept in (
            'multipart/related; type="image/x-dicom-rle"',
            "multipart/related; type=image/x-dicom-rle; transfer-syntax=1.2.840.10008.1.2.5",
            "image/x-dicom-rle",
        ):
            response = await http.get(f"{_path(rle)}/frames/1", headers={"Accept": accept})
            assert response.status_code == 200, accept
            assert "x-dicom-rle" not in response.headers["content-type"]
        raw = _corpus("emri_small_jpeg_ls_lossless.dcm")
        jls = dcmread(io.BytesIO(raw))
        response = await http.post(
            f"{ROOT}/studies", content=multipart([raw]), headers=stow_headers()
        )
        assert response.status_code == 200
        response = await http.get(
            f"{_path(jls)}/frames/3", headers={"Accept": 'multipart/related; type="image/x-jls"'}
        )
        assert response.status_code == 200
        part_type, syntax, [part] = parse_multipart(response)
        assert (part_type, syntax) == ("image/jls", "1.2.840.10008.1.2.4.80")
        assert part.payload == list(generate_frames(jls.PixelData, number_of_frames=10))[2]
        # q-values: the decoded type preferred by weight
        response = await http.get(
            f"{_path(jls)}/frames/3",
            headers={"Accept": f'multipart/related; type="image/jls"; q=0.3, {MULTI_OCTET}'},
        )
        assert parse_multipart(response)[0] == OCTET
        # accept query parameter wins over the header (NEG-05)
        response = await http.get(
            f"{_path(jls)}/frames/3",
            params={"accept": 'multipart/related; type="image/jls"'},
            headers={"Accept": MULTI_OCTET},
        )
        assert parse_multipart(response)[0] == "image/jls"


# --- bulk data: study/series/instance /bulkdata (BULK-03), byte ranges (BULK-04) ---


async def test_bulkdata_of_study_series_instance(settings: Settings) -> None:
    async with app_client(settings) as (_, http):
        study = await _study(http)
        for url, instances in (
            (f"{ROOT}/studies/{study.uid}", [study.native, study.rle, study.other]),
            (
                f"{ROOT}/studies/{study.uid}/series/{study.native.SeriesInstanceUID}",
                [study.native, study.rle],
            ),
            (_path(study.rle), [study.rle]),
        ):
            metadata = (await http.get(f"{url}/metadata")).json()
            uris = [
                item[tag]["BulkDataURI"]
                for item in metadata
                for tag in sorted(item)
                if "BulkDataURI" in item[tag]
            ]
            response = await http.get(f"{url}/bulkdata")
            assert response.status_code == 200, response.text
            part_type, syntax, parts = parse_multipart(response)
            assert (part_type, syntax) == (OCTET, None)
            assert [p.headers["Content-Location"] for p in parts] == uris
            by_uri = {p.headers["Content-Location"]: p.payload for p in parts}
            for ds in instances:
                assert by_uri[f"{ORIGIN}{_path(ds)}/bulkdata/7FE00010"] == ds.PixelData
        response = await http.get(f"{_path(study.rle)}/bulkdata", headers={"Accept": OCTET})
        assert response.status_code == 406  # several values are never one single part
        assert (await http.get(f"{_path(study.no_pixels)}/bulkdata")).status_code == 404
        assert (await http.get(f"{ROOT}/studies/{generate_uid()}/bulkdata")).status_code == 404
        assert (await http.get(f"{ROOT}/studies/1.02/bulkdata")).status_code == 400


async def test_bulkdata_byte_ranges(settings: Settings) -> None:
    async with app_client(settings) as (_, http):
        study = await _study(http)
        url = f"{_path(study.native)}/bulkdata/7FE00010"
        value = study.native.PixelData
        size = len(value)

        response = await http.get(url, headers={"Accept": OCTET, "Range": "bytes=10-19"})
        assert response.status_code == 206
        assert response.headers["content-range"] == f"bytes 10-19/{size}"
        assert response.headers["accept-ranges"] == "bytes"
        assert response.content == value[10:20]
        response = await http.get(url, headers={"Accept": OCTET, "Range": "bytes=-7"})
        assert response.content == value[-7:]
        response = await http.get(url, headers={"Accept": OCTET, "Range": "bytes=100-"})
        assert response.content == value[100:]
        assert response.headers["content-range"] == f"bytes 100-{size - 1}/{size}"

        # multipart (dicomweb-client's retrieve_bulkdata(byte_range=...)): the part holds it
        response = await http.get(url, headers={"Range": "bytes=0-3"})
        assert response.status_code == 206
        _, _, [part] = parse_multipart(response)
        assert part.payload == value[:4]
        assert part.headers["Content-Range"] == f"bytes 0-3/{size}"

        # unsatisfiable: 416 with the size (RFC 9110 §15.5.17)
        response = await http.get(url, headers={"Accept": OCTET, "Range": f"bytes={size}-"})
        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{size}"
        # ignored: several ranges, another unit, malformed, If-Range without a validator
        for headers in (
            {"Range": "bytes=0-1,4-5"},
            {"Range": "pages=1-2"},
            {"Range": "bytes=5-2"},
            {"Range": "bytes=0-1", "If-Range": '"x"'},
        ):
            response = await http.get(url, headers={"Accept": OCTET, **headers})
            assert response.status_code == 200, headers
            assert response.content == value


# --- strict Accept (NEG-04) ---


async def test_strict_accept(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path / "data", strict_accept=True)
    async with app_client(settings) as (_, http):
        study = await _study(http)
        urls = [
            f"{ROOT}/studies/{study.uid}",
            f"{ROOT}/studies/{study.uid}/metadata",
            f"{_path(study.native)}/frames/1",
            f"{_path(study.native)}/bulkdata/7FE00010",
            f"{ROOT}/studies/{study.uid}/pixeldata",
            f"{ROOT}/studies/{study.uid}/bulkdata",
        ]
        for url in urls:
            request = http.build_request("GET", url)
            del request.headers["accept"]
            response = await http.send(request)
            assert response.status_code == 406, url
            assert "Accept" in response.json()["detail"]
            assert (await http.get(url, headers={"Accept": "*/*"})).status_code == 200, url
        request = http.build_request("GET", urls[1], params={"accept": "application/dicom+json"})
        del request.headers["accept"]
        assert (await http.send(request)).status_code == 200


# --- gzipped metadata (GEN-08) ---


async def test_metadata_gzip(settings: Settings) -> None:
    async with app_client(settings) as (_, http):
        study = await _study(http)
        url = f"{ROOT}/studies/{study.uid}/metadata"
        plain = await http.get(url, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        # the CORS layer adds Origin to the list
        assert "Accept-Encoding" in [v.strip() for v in plain.headers["vary"].split(",")]
        request = http.build_request("GET", url, headers={"Accept-Encoding": "gzip"})
        zipped = await http.send(request, stream=True)
        raw = b"".join([chunk async for chunk in zipped.aiter_raw()])
        assert zipped.headers["content-encoding"] == "gzip"
        assert gzip.decompress(raw) == plain.content
        assert zipped.headers["etag"] != plain.headers["etag"]
        assert zipped.headers["etag"].endswith('-gzip"')
        for tag in (plain.headers["etag"], zipped.headers["etag"]):
            again = await http.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": tag})
            assert again.status_code == 304
            assert again.headers["etag"] == zipped.headers["etag"]
        # served again (from the cache): the same bytes
        assert (await http.get(url, headers={"Accept-Encoding": "identity"})).content == (
            plain.content
        )
        assert (await http.get(url, headers={"Accept-Encoding": "gzip;q=0"})).headers.get(
            "content-encoding"
        ) is None


# --- frames that are not byte ranges of the stored file (deflated data set) ---


async def test_frames_of_a_deflated_instance(settings: Settings) -> None:
    """The frames of a deflated data set are decoded from the whole file (no frame index)."""
    async with app_client(settings) as (_, http):
        raw = _corpus("image_dfl.dcm")
        response = await http.post(
            f"{ROOT}/studies", content=multipart([raw]), headers=stow_headers()
        )
        assert response.status_code == 200, response.text
        ds = dcmread(io.BytesIO(raw))
        expected = np.ascontiguousarray(ds.pixel_array).tobytes()
        for accept in (MULTI_OCTET, f"{MULTI_OCTET}; transfer-syntax=*", None):
            request = http.build_request("GET", f"{_path(ds)}/frames/1")
            if accept is not None:
                request.headers["accept"] = accept
            response = await http.send(request)
            assert response.status_code == 200, (accept, response.text)
            part_type, syntax, [part] = parse_multipart(response)
            assert (part_type, syntax) == (OCTET, EVRLE)
            assert part.payload == expected
        response = await http.get(f"{_path(ds)}/pixeldata", headers={"Accept": OCTET})
        assert response.content == expected
        # and the instance itself, inflated to Explicit VR Little Endian when asked for
        response = await http.get(
            _path(ds), headers={"Accept": f"application/dicom; transfer-syntax={EVRLE}"}
        )
        assert response.status_code == 200
        out = dcmread(io.BytesIO(response.content))
        assert out.file_meta.TransferSyntaxUID == EVRLE
        assert np.array_equal(out.pixel_array, ds.pixel_array)

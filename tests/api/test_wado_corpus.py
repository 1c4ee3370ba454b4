"""Every file of pydicom + pydicom-data stored, then retrieved (issue 4 tests; NEG-06..09, FRM).

* ``transfer-syntax=*``: byte-identical to what was stored (a preamble + ``DICM`` added when the
  file had none), except Implicit VR Little Endian and Explicit VR Big Endian, which go out as
  Explicit VR Little Endian (NEG-08) with the same pixels;
* Explicit VR Little Endian: the pixel arrays equal pydicom's decoding of the original, for every
  frame; an instance pydicom itself cannot decode is refused with 406;
* the frames of every multi-frame file (native, RLE, JPEG, JPEG 2000, JPEG-LS) decoded by
  ``/frames`` equal pydicom's decoding of that frame.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import pack_bits, pixel_array

from tests.api.stored import store
from tests.corpus import corpus
from tests.factories import multipart, stow_headers
from tests.multipart import parse_multipart

ROOT = "/dicom-web"
EVRLE = "1.2.840.10008.1.2.1"
NOT_FOR_THE_WEB = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.2"}
OCTET = 'multipart/related; type="application/octet-stream"'


@dataclass
class Retrieved:
    path: Path
    raw: bytes
    url: str
    syntax: str


async def _store_corpus(client: httpx.AsyncClient) -> list[Retrieved]:
    """Store every corpus file; the ones stored under their own bytes, with their URLs."""
    out: list[Retrieved] = []
    seen: set[str] = set()
    for path in corpus():
        raw = path.read_bytes()
        response = await client.post(
            f"{ROOT}/studies", content=multipart([raw]), headers=stow_headers()
        )
        body = response.json()
        stored = body.get("00081199", {}).get("Value", [])
        if not stored:
            continue
        sop = stored[0]["00081155"]["Value"][0]
        if sop in seen:  # another corpus file with the same SOP Instance UID came first
            continue
        seen.add(sop)
        ds = dcmread(io.BytesIO(raw), force=True, stop_before_pixels=True)
        url = stored[0]["00081190"]["Value"][0].removeprefix("http://testserver")
        out.append(Retrieved(path, raw, url, str(ds.file_meta.TransferSyntaxUID)))
    return out


def _pixels(raw: bytes) -> np.ndarray | None:
    try:
        return dcmread(io.BytesIO(raw), force=True).pixel_array
    except Exception:  # pydicom cannot decode it: nothing to compare against
        return None


async def test_every_corpus_file_round_trips(client: httpx.AsyncClient) -> None:
    files = await _store_corpus(client)
    assert len(files) > 100
    checked = {"as stored": 0, "converted": 0, "decoded": 0, "refused": 0}
    for item in files:
        name = item.path.name
        # transfer-syntax=*: the stored bytes (NEG-06), or EVRLE for the two NEG-08 syntaxes
        response = await client.get(
            item.url, headers={"Accept": "application/dicom; transfer-syntax=*"}
        )
        assert response.status_code == 200, (name, response.text)
        if item.syntax in NOT_FOR_THE_WEB:
            assert response.headers["content-type"] == f"application/dicom; transfer-syntax={EVRLE}"
            out = dcmread(io.BytesIO(response.content))
            assert out.file_meta.TransferSyntaxUID == EVRLE, name
            assert out.SOPInstanceUID == dcmread(io.BytesIO(item.raw), force=True).SOPInstanceUID
            expected = _pixels(item.raw)
            if expected is not None:
                assert np.array_equal(out.pixel_array, expected), name
            checked["converted"] += 1
        else:
            prefix = b"" if item.raw[128:132] == b"DICM" else bytes(128) + b"DICM"
            assert response.content == prefix + item.raw, name
            checked["as stored"] += 1

        # Explicit VR Little Endian named: decoded, pixels equal pydicom's decoding (WADO-02)
        if item.syntax == EVRLE:
            continue
        response = await client.get(
            item.url, headers={"Accept": f"application/dicom; transfer-syntax={EVRLE}"}
        )
        original = dcmread(io.BytesIO(item.raw), force=True)
        if "PixelData" not in original:
            assert response.status_code == 200, name
            continue
        expected = _pixels(item.raw)
        if expected is None:
            assert response.status_code == 406, (name, response.status_code)
            checked["refused"] += 1
            continue
        assert response.status_code == 200, (name, response.text)
        out = dcmread(io.BytesIO(response.content))
        assert out.file_meta.TransferSyntaxUID == EVRLE
        assert out.file_meta.ImplementationClassUID != original.file_meta.get(
            "ImplementationClassUID"
        )
        assert response.content[:132] == bytes(128) + b"DICM"  # WADO-04
        assert np.array_equal(out.pixel_array, expected), name
        checked["decoded"] += 1
    assert checked["decoded"] >= 20, checked
    assert checked["converted"] >= 2, checked


def _expected_frame(ds: Dataset, frame: np.ndarray) -> bytes:
    if ds.BitsAllocated == 1:
        return pack_bits(frame)
    return np.ascontiguousarray(frame).astype(frame.dtype.newbyteorder("<")).tobytes()


MULTI_FRAME = [
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
    "OBXXXX1A_rle_2frame.dcm",
    "emri_small.dcm",
    "emri_small_RLE.dcm",
    "emri_small_big_endian.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
    "color3d_jpeg_baseline.dcm",  # the 120-frame ultrasound of pydicom-data (JPEG baseline)
    "SC_rgb_expb_16bit_2frame.dcm",
    "liver.dcm",
]


@pytest.mark.parametrize("name", MULTI_FRAME)
async def test_multi_frame_frames_equal_pydicom(client: httpx.AsyncClient, name: str) -> None:
    """FRM-03/04/05: each frame, decoded, equals pydicom's decoding of that frame."""
    [path] = [p for p in corpus() if p.name == name]
    stored = await store(client, path.read_bytes())
    ds, url = stored.ds, stored.url
    count = int(ds.NumberOfFrames)
    # every frame, in reverse order; of the 120-frame ultrasound a sample (decoding is slow)
    asked = list(range(count, 0, -1)) if count <= 10 else [count, count // 2 + 1, 1]
    expected = {n: _expected_frame(ds, pixel_array(str(path), index=n - 1)) for n in asked}
    response = await client.get(
        f"{url}/frames/{','.join(map(str, asked))}", headers={"Accept": OCTET}
    )
    assert response.status_code == 200, response.text
    part_type, syntax, parts = parse_multipart(response)
    assert (part_type, syntax) == ("application/octet-stream", EVRLE)
    assert [p.payload for p in parts] == [expected[n] for n in asked]
    # /pixeldata: every frame in order, Content-Location .../frames/n (FRM-07)
    accept = OCTET if count <= 10 else f"{OCTET}; transfer-syntax=*"
    response = await client.get(f"{url}/pixeldata", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    _, _, parts = parse_multipart(response)
    assert len(parts) == count
    assert parts[-1].headers["Content-Location"].endswith(f"{url}/frames/{count}")
    if count <= 10:
        assert [p.payload for p in parts] == [expected[n] for n in range(1, count + 1)]
    else:  # as stored: the fragments of each frame
        assert [p.payload for p in parts] == list(
            generate_frames(ds.PixelData, number_of_frames=count)
        )

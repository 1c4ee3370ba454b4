"""STOW-RS with DICOM JSON metadata and bulk data parts (STOW-02), on PostgreSQL and SQLite.

The metadata of real files is written with Lightbox's own DICOM JSON code, the bulk values go in
their own parts, and what is retrieved afterwards is compared with the original file.
"""

import io
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.encaps import generate_frames
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from app.dicom.dicomjson import dataset_to_dict
from app.dicom.dicomxml import to_xml
from tests.corpus import corpus_path
from tests.factories import make_dataset

ROOT = "/dicom-web"
BOUNDARY = "stow-json-boundary-5e1"
CLIENT_BASE = "https://client.example/instances/1"
JSON_TYPE = f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}'


Bulk = Sequence[tuple[str, str, bytes]]  # (content type, location, bytes) of each bulk part


def _related(metadata_type: str, documents: Sequence[bytes], bulk: Bulk) -> bytes:
    """One ``metadata_type`` part per document, then the bulk parts with their locations."""
    out = bytearray()
    for document in documents:
        out += f"--{BOUNDARY}\r\nContent-Type: {metadata_type}\r\n\r\n".encode()
        out += document + b"\r\n"
    for content_type, location, data in bulk:
        out += (
            f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\nContent-Location: {location}\r\n\r\n"
        ).encode()
        out += data + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def _body(metadata: Sequence[Any], bulk: Bulk) -> bytes:
    """The JSON part first, then one part per ``(content type, location, bytes)``."""
    return _related("application/dicom+json", [orjson.dumps(list(metadata))], bulk)


def _metadata(ds: Dataset, base: str = CLIENT_BASE) -> dict[str, Any]:
    """The DICOM JSON of ``ds`` with every binary value above 64 bytes as a BulkDataURI."""
    return dataset_to_dict(ds, base_path=base, inline_binary_max=64)


def _bulk_uris(obj: dict[str, Any]) -> dict[str, str]:
    """Top-level tag -> BulkDataURI."""
    return {tag: elem["BulkDataURI"] for tag, elem in obj.items() if "BulkDataURI" in elem}


async def _stow(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post(
        f"{ROOT}/studies",
        content=body,
        headers={"Content-Type": JSON_TYPE, "Accept": "application/dicom+json"},
    )


async def _retrieve(client: httpx.AsyncClient, ds: Dataset) -> Dataset:
    url = (
        f"{ROOT}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    response = await client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert response.status_code == 200, response.text
    return dcmread(io.BytesIO(response.content))


def _same_attributes(original: Dataset, stored: Dataset) -> None:
    for elem in original:
        # pixel data is compared by the caller; padding and group lengths are not attributes
        if elem.tag in (0x7FE00010, 0xFFFCFFFC) or elem.tag.element == 0:
            continue
        assert stored[elem.tag].value == elem.value, elem.keyword


async def test_native_pixel_data_from_a_real_file(client: httpx.AsyncClient) -> None:
    original = dcmread(corpus_path("CT_small.dcm"))
    obj = _metadata(original)
    uris = _bulk_uris(obj)
    assert {"7FE00010", "00431028", "00431029"} <= set(uris)  # pixel data and private OB values
    parts = [
        ("application/octet-stream", uri, original[int(tag, 16)].value)
        for tag, uri in sorted(uris.items(), reverse=True)
    ]
    response = await _stow(client, _body([obj], parts))
    assert response.status_code == 200, response.text
    (item,) = response.json()["00081199"]["Value"]
    assert item["00081155"]["Value"] == [original.SOPInstanceUID]

    stored = await _retrieve(client, original)
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    _same_attributes(original, stored)
    assert np.array_equal(stored.pixel_array, original.pixel_array)


@pytest.mark.parametrize(
    ("name", "explicit_syntax"),
    [("SC_rgb_jpeg_dcmtk.dcm", False), ("JPEG-lossy.dcm", False), ("JPEG2000.dcm", True)],
)
async def test_compressed_pixel_data_is_encapsulated_unchanged(
    client: httpx.AsyncClient, name: str, explicit_syntax: bool
) -> None:
    original = dcmread(corpus_path(name))
    syntax = str(original.file_meta.TransferSyntaxUID)
    (frame,) = generate_frames(original.PixelData, number_of_frames=1)
    obj = _metadata(original)
    uri = _bulk_uris(obj)["7FE00010"]
    media = "image/jp2" if syntax.startswith("1.2.840.10008.1.2.4.9") else "image/jpeg"
    content_type = f"{media}; transfer-syntax={syntax}" if explicit_syntax else media
    response = await _stow(client, _body([obj], [(content_type, uri, frame)]))
    assert response.status_code == 200, response.text

    stored = await _retrieve(client, original)
    # JPEG: the syntax is read from the frame header (baseline .50, extended .51)
    assert stored.file_meta.TransferSyntaxUID == syntax
    (stored_frame,) = generate_frames(stored.PixelData, number_of_frames=1)
    # the same bitstream (up to the even-length padding of a fragment), so the same pixels
    assert stored_frame.rstrip(b"\0") == frame.rstrip(b"\0")
    _same_attributes(original, stored)


@pytest.mark.parametrize(("mode", "fmt"), [("RGB", "PNG"), ("L", "PNG"), ("P", "GIF")])
async def test_png_and_gif_are_stored_losslessly(
    client: httpx.AsyncClient, mode: str, fmt: str
) -> None:
    rng = np.random.default_rng(7)
    shape = (12, 10, 3) if mode == "RGB" else (12, 10)
    pixels = rng.integers(0, 255, size=shape, dtype=np.uint8)
    picture = Image.fromarray(pixels, mode="RGB" if mode == "RGB" else "L")
    if mode == "P":
        picture = picture.convert("P")
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt)
    expected = np.asarray(picture.convert("RGB" if mode != "L" else "L"))

    ds = make_dataset(SOPClassUID=SecondaryCaptureImageStorage, Modality="OT")
    obj = _metadata(ds)
    uri = _bulk_uris(obj)["7FE00010"]
    response = await _stow(client, _body([obj], [(f"image/{fmt.lower()}", uri, buffer.getvalue())]))
    assert response.status_code == 200, response.text

    stored = await _retrieve(client, ds)
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert (stored.Rows, stored.Columns) == (12, 10)
    assert stored.PhotometricInterpretation == ("MONOCHROME2" if mode == "L" else "RGB")
    assert stored.BitsAllocated == 8
    assert np.array_equal(stored.pixel_array, expected)
    assert stored.PatientName == ds.PatientName


async def test_each_instance_fails_or_succeeds_on_its_own(client: httpx.AsyncClient) -> None:
    good, orphan, bad_uid = (make_dataset() for _ in range(3))
    good_obj = _metadata(good, f"{CLIENT_BASE}/good")
    orphan_obj = _metadata(orphan, f"{CLIENT_BASE}/orphan")  # its bulk part never comes
    bad_obj = _metadata(bad_uid, f"{CLIENT_BASE}/bad")
    bad_obj["00080018"] = {"vr": "UI", "Value": ["1.2.x"]}
    bad_obj.pop("7FE00010")
    response = await _stow(
        client,
        _body(
            [good_obj, orphan_obj, bad_obj],
            [
                ("application/octet-stream", _bulk_uris(good_obj)["7FE00010"], good.PixelData),
                ("application/octet-stream", "", b"no location"),
            ],
        ),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert [i["00081155"]["Value"] for i in body["00081199"]["Value"]] == [[good.SOPInstanceUID]]
    failed = {i["00081155"]["Value"][0]: i["00081197"]["Value"] for i in body["00081198"]["Value"]}
    assert failed == {orphan.SOPInstanceUID: [0xC000], "1.2.x": [0xC000]}
    assert [i["00081197"]["Value"] for i in body["0008119A"]["Value"]] == [[0xC000]]
    stored = await _retrieve(client, good)
    assert np.array_equal(stored.pixel_array, good.pixel_array)


async def test_metadata_only_and_target_study(client: httpx.AsyncClient) -> None:
    ds = make_dataset()
    del ds.PixelData
    obj = _metadata(ds)
    response = await client.post(
        f"{ROOT}/studies/{generate_uid()}",
        content=_body([obj], []),
        headers={"Content-Type": JSON_TYPE},
    )
    assert response.status_code == 409  # STOW-07: another study in the URL
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0110]
    stored = await client.post(
        f"{ROOT}/studies/{ds.StudyInstanceUID}",
        content=_body([obj], []),
        headers={"Content-Type": JSON_TYPE},
    )
    assert stored.status_code == 200
    assert "PixelData" not in await _retrieve(client, ds)


async def test_malformed_requests(client: httpx.AsyncClient) -> None:
    not_json = (
        f"--{BOUNDARY}\r\nContent-Type: application/dicom+json\r\n\r\n{{nope\r\n--{BOUNDARY}--\r\n"
    ).encode()
    response = await _stow(client, not_json)
    assert response.status_code == 400
    assert response.json()["0008119A"]["Value"][0]["00081197"]["Value"] == [0xC000]

    ds = make_dataset()
    obj = _metadata(ds)
    uri = _bulk_uris(obj)["7FE00010"]
    for content_type in ("image/tiff", "image/jpeg; transfer-syntax=1.2.840.10008.1.2.1"):
        wrong = await _stow(client, _body([obj], [(content_type, uri, b"II*\0")]))
        assert wrong.status_code == 400, content_type
        assert wrong.json()["00081198"]["Value"][0]["00081155"]["Value"] == [ds.SOPInstanceUID]

    other_type = await client.post(
        f"{ROOT}/studies",
        content=b"--b\r\n\r\n<x/>\r\n--b--\r\n",
        headers={"Content-Type": 'multipart/related; type="text/xml"; boundary=b'},
    )
    assert other_type.status_code == 415


XML_TYPE = f'multipart/related; type="application/dicom+xml"; boundary={BOUNDARY}'


def _xml_body(documents: Sequence[bytes], bulk: Bulk) -> bytes:
    """One metadata part per document, then the bulk parts."""
    return _related("application/dicom+xml", documents, bulk)


async def test_xml_form(client: httpx.AsyncClient) -> None:
    """The XML form: PS3.19 documents (written by Lightbox's converter) plus bulk parts."""
    original = dcmread(corpus_path("CT_small.dcm"))
    other = make_dataset()
    documents, parts = [], []
    for ds, base in ((original, f"{CLIENT_BASE}/a"), (other, f"{CLIENT_BASE}/b")):
        obj = _metadata(ds, base)
        documents.append(to_xml(obj))
        parts += [
            ("application/octet-stream", uri, ds[int(tag, 16)].value)
            for tag, uri in _bulk_uris(obj).items()
        ]
    response = await client.post(
        f"{ROOT}/studies", content=_xml_body(documents, parts), headers={"Content-Type": XML_TYPE}
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["00081199"]["Value"]) == 2
    stored = await _retrieve(client, original)
    _same_attributes(original, stored)
    assert np.array_equal(stored.pixel_array, original.pixel_array)
    assert np.array_equal((await _retrieve(client, other)).pixel_array, other.pixel_array)


async def test_xml_form_refuses_malformed_and_entity_documents(client: httpx.AsyncClient) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><NativeDicomModel>&b;</NativeDicomModel>'
    )
    for document in (b"<NativeDicomModel>", bomb, b"<Other/>"):
        response = await client.post(
            f"{ROOT}/studies",
            content=_xml_body([document], []),
            headers={"Content-Type": XML_TYPE},
        )
        assert response.status_code == 400, document
        assert response.json()["0008119A"]["Value"][0]["00081197"]["Value"] == [0xC000]

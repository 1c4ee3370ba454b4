"""WADO-RS bulk data by BulkDataURI over the ASGI app, on PostgreSQL and SQLite (BULK-01/02)."""

import io
from pathlib import Path

import httpx
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.corpus import corpus_path
from tests.factories import (
    make_dataset,
    make_instance,
    make_pdf_dataset,
    multipart,
    stow_headers,
    to_bytes,
)
from tests.multipart import parse_multipart

ROOT = "/dicom-web"
ORIGIN = "http://testserver"
OCTET = "application/octet-stream"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


async def _store(client: httpx.AsyncClient, raw: bytes) -> Dataset:
    response = await client.post(
        f"{ROOT}/studies", content=multipart([raw]), headers=stow_headers()
    )
    assert response.status_code == 200, response.text
    return dcmread(io.BytesIO(raw), force=True)


async def _metadata(client: httpx.AsyncClient, ds: Dataset) -> dict[str, dict[str, object]]:
    response = await client.get(f"{_instance(ds)}/metadata")
    assert response.status_code == 200, response.text
    [item] = response.json()
    return item  # type: ignore[no-any-return]


def _corpus(name: str) -> bytes:
    return Path(corpus_path(name)).read_bytes()


def _instance(ds: Dataset) -> str:
    return (
        f"{ROOT}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def _relative(uri: object) -> str:
    assert isinstance(uri, str)
    assert uri.startswith(f"{ORIGIN}{ROOT}/"), uri
    return uri.removeprefix(ORIGIN)


async def _one_part(client: httpx.AsyncClient, url: str, **kwargs: object) -> tuple[str, bytes]:
    """(part type, payload) of a one-part bulk data response; checks Content-Location."""
    response = await client.get(url, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    part_type, syntax, parts = parse_multipart(response)
    assert syntax is None
    [part] = parts
    assert part.headers["Content-Type"] == part_type
    assert part.headers["Content-Location"] == f"{ORIGIN}{url}"
    return part_type, part.payload


async def test_pixel_data_by_bulk_data_uri(client: httpx.AsyncClient) -> None:
    ds = await _store(client, make_instance(rows=300, columns=280))  # > 64 KiB: deferred
    url = _relative((await _metadata(client, ds))["7FE00010"]["BulkDataURI"])
    assert url == f"{_instance(ds)}/bulkdata/7FE00010"
    part_type, payload = await _one_part(client, url)
    assert part_type == OCTET
    assert payload == ds.PixelData

    for how in ({"headers": {"Accept": "*/*"}}, {"headers": {"Accept": "multipart/related"}}):
        assert await _one_part(client, url, **how) == (OCTET, ds.PixelData)

    # single part when asked plainly, in the header or the accept parameter (NEG-11)
    for how in (
        {"headers": {"Accept": OCTET}},
        {"params": {"accept": OCTET}, "headers": {"Accept": "image/png"}},
    ):
        response = await client.get(url, **how)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == OCTET
        assert response.headers["content-location"] == f"{ORIGIN}{url}"
        assert response.content == ds.PixelData


async def test_nested_bulk_value(client: httpx.AsyncClient) -> None:
    icon = Dataset()
    icon.Rows, icon.Columns = 4, 4
    icon.PixelData = bytes(range(16)) * 2
    icon["PixelData"].VR = "OB"
    ds = await _store(client, to_bytes(make_dataset(IconImageSequence=[icon])))
    item = (await _metadata(client, ds))["00880200"]["Value"][0]  # type: ignore[index]
    url = _relative(item["7FE00010"]["BulkDataURI"])
    assert url == f"{_instance(ds)}/bulkdata/00880200/0/7FE00010"
    assert await _one_part(client, url) == (OCTET, bytes(range(16)) * 2)
    # the top-level value is another one
    assert (await _one_part(client, f"{_instance(ds)}/bulkdata/7FE00010"))[1] == ds.PixelData
    for missing in ("00880200/1/7FE00010", "00880200/0/7FE00011", "00100010/0/7FE00010"):
        response = await client.get(f"{_instance(ds)}/bulkdata/{missing}")
        assert response.status_code == 404, missing


async def test_big_endian_values_go_out_little_endian(client: httpx.AsyncClient) -> None:
    raw = _corpus("MR_small_bigendian.dcm")
    ds = await _store(client, raw)
    url = _relative((await _metadata(client, ds))["7FE00010"]["BulkDataURI"])
    _, payload = await _one_part(client, url)
    expected = ds.pixel_array.astype("<u2" if ds.PixelRepresentation == 0 else "<i2")
    assert payload == expected.tobytes()
    assert payload != ds.PixelData  # the stored bytes are big endian


async def test_encapsulated_pixel_data(client: httpx.AsyncClient) -> None:
    """Encapsulated Pixel Data goes out as pydicom holds it: the encapsulated byte stream."""
    raw = _corpus("SC_rgb_rle.dcm")
    ds = await _store(client, raw)
    url = _relative((await _metadata(client, ds))["7FE00010"]["BulkDataURI"])
    assert await _one_part(client, url) == (OCTET, ds.PixelData)


def _pdf_instance() -> bytes:
    return to_bytes(make_pdf_dataset(PDF, DocumentTitle="report"))


async def test_encapsulated_document(client: httpx.AsyncClient) -> None:
    ds = await _store(client, _pdf_instance())
    url = _relative((await _metadata(client, ds))["00420011"]["BulkDataURI"])
    assert url == f"{_instance(ds)}/bulkdata/00420011"
    # BULK-02: labelled with its MIME type
    assert await _one_part(client, url) == ("application/pdf", ds.EncapsulatedDocument)
    for accept in ("application/pdf", "application/pdf, */*;q=0.1"):
        response = await client.get(url, headers={"Accept": accept})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pdf"
        assert response.content == ds.EncapsulatedDocument
    # OHIF's direct URL: ?accept=application/pdf
    response = await client.get(url, params={"accept": "application/pdf"})
    assert response.headers["content-type"] == "application/pdf"
    # octet-stream is always acceptable
    response = await client.get(url, headers={"Accept": OCTET})
    assert response.headers["content-type"] == OCTET
    assert response.content == ds.EncapsulatedDocument
    part_type, _ = await _one_part(
        client, url, headers={"Accept": f'multipart/related; type="{OCTET}"'}
    )
    assert part_type == OCTET


async def test_errors(client: httpx.AsyncClient) -> None:
    ds = await _store(client, make_instance())
    instance = _instance(ds)
    for path in ("00100021", "7FE00011", "7FE00010/0/00100010", "00100010/0/7FE00010"):
        response = await client.get(f"{instance}/bulkdata/{path}")
        assert response.status_code == 404, path
    for path in (
        "7FE0001",
        "7fe00010x",
        "7FE00010/",
        "00880200/-1/7FE00010",
        "00880200/a/7FE00010",
    ):
        response = await client.get(f"{instance}/bulkdata/{path}")
        assert response.status_code == 400, path
    unknown = f"{ROOT}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    response = await client.get(f"{unknown}/instances/{generate_uid()}/bulkdata/7FE00010")
    assert response.status_code == 404
    response = await client.get(f"{ROOT}/studies/1.2.x/series/1.3/instances/1.4/bulkdata/7FE00010")
    assert response.status_code == 400
    for accept in (
        "image/png",
        "application/dicom",
        'multipart/related; type="application/dicom"',
        "application/pdf",
        "*/*;q=0",
    ):
        response = await client.get(f"{instance}/bulkdata/7FE00010", headers={"Accept": accept})
        assert response.status_code == 406, accept

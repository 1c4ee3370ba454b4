"""Decoded-size bombs and untrusted counts over the ASGI app (issue 19), on PostgreSQL and SQLite.

Class 1: bombs whose counts are consistent are stored; every route that would decode them answers
413 (renderings) or 406 (where the stored form is the way out, which the reason says) before any
codec runs, and the stored form is still served. The decode limits are small here so the bombs
stay small. Class 2: files whose counts lie are refused at STOW (0xC000), and instances indexed
before ingest checked counts (simulated by editing their index rows) get clear 4xx answers.
"""

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from pydicom.uid import JPEGBaseline8Bit
from sqlalchemy import select, update

from app.config import Limits
from app.index.models import Instance
from app.services.container import Services
from tests import bombs
from tests.api.stored import Obj, store, wado_uri_query
from tests.conftest import app_client, make_settings
from tests.factories import make_dataset, make_instance, multipart, stow_headers, to_bytes

EVRLE = "1.2.840.10008.1.2.1"
NATIVE_FRAMES = f'multipart/related; type="application/octet-stream"; transfer-syntax={EVRLE}'
STORED_FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
TRANSCODED = f'multipart/related; type="application/dicom"; transfer-syntax={EVRLE}'
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
DEFAULT = 'multipart/related; type="application/dicom"'
LIMITS = Limits(
    max_decoded_frame_bytes=1 << 20,
    max_decoded_instance_bytes=4 << 20,
    max_rendered_pixels=1 << 19,
)

Client = tuple[Services, httpx.AsyncClient]


@pytest.fixture
async def app(database_url: str, tmp_path: object) -> AsyncIterator[Client]:
    settings = make_settings(database_url, tmp_path / "data", limits=LIMITS)  # type: ignore[operator]
    async with app_client(settings) as pair:
        yield pair


def _refused(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for word in ("allowed", *words):
        assert word in detail, detail


BOMBS: dict[str, Callable[[], bytes]] = {
    "rle": lambda: bombs.rle_bomb(1024, 1024),  # 2 MiB a frame, by its header
    "jpeg-header": lambda: bombs.jpeg_bomb(header=True),  # 1.6 GB, header and codestream
    "jpeg-codestream": lambda: bombs.jpeg_bomb(header=False),  # 1.6 GB, codestream only
    "jpeg2000-codestream": bombs.j2k_bomb,
    "jpegls-codestream": bombs.jpegls_bomb,
}


@pytest.mark.parametrize("name", list(BOMBS))
async def test_compressed_bombs_are_refused_on_every_decoding_route(app: Client, name: str) -> None:
    _, http = app
    obj = await store(http, BOMBS[name]())
    url = obj.url

    frames = await http.get(f"{url}/frames/1", headers={"Accept": NATIVE_FRAMES})
    _refused(frames, 406, "transfer-syntax=*")
    pixeldata = await http.get(f"{url}/pixeldata", headers={"Accept": NATIVE_FRAMES})
    _refused(pixeldata, 406)
    _refused(await http.get(f"{url}/rendered"), 413)
    _refused(await http.get(f"{url}/thumbnail"), 413)
    wado = "/dicom-web/wado"
    _refused(await http.get(wado, params=wado_uri_query(obj, contentType="image/jpeg")), 413)
    params = wado_uri_query(obj, contentType="application/dicom", transferSyntax=EVRLE)
    _refused(await http.get(wado, params=params), 406, "stored transfer syntax")
    _refused(await http.get(url, headers={"Accept": TRANSCODED}), 406)

    # the stored forms are still served, and nothing was decoded to serve them
    stored = str(obj.ds.file_meta.TransferSyntaxUID)
    as_stored = await http.get(url, headers={"Accept": AS_STORED})
    assert as_stored.status_code == 200
    assert f"transfer-syntax={stored}" in as_stored.headers["content-type"]
    raw_frames = await http.get(f"{url}/frames/1", headers={"Accept": STORED_FRAMES})
    assert raw_frames.status_code == 200


async def test_default_retrieve_of_a_bomb_sends_it_as_stored(app: Client) -> None:
    """NEG-07 names Explicit VR Little Endian the default, but not at any cost: an instance
    the index shows too large to decode goes out in its stored syntax, like one too large for
    Explicit VR Little Endian itself."""
    _, http = app
    obj = await store(http, BOMBS["rle"]())
    default = await http.get(obj.url, headers={"Accept": DEFAULT})
    assert default.status_code == 200
    assert "transfer-syntax=1.2.840.10008.1.2.5" in default.headers["content-type"]


async def test_deflated_bomb_is_bounded_by_what_is_inflated(app: Client) -> None:
    _, http = app
    raw = bombs.deflate_bomb(512, 12)  # 512 KiB a frame, 6 MiB inflated, 7 kB stored
    obj = await store(http, raw)
    url = obj.url
    _refused(await http.get(f"{url}/frames/1"), 406, "max_decoded_instance_bytes")
    _refused(await http.get(f"{url}/pixeldata"), 406)
    _refused(await http.get(f"{url}/rendered"), 413)
    _refused(await http.get(f"{url}/frames/1/rendered"), 413)
    _refused(await http.get(url, headers={"Accept": TRANSCODED}), 406)
    as_stored = await http.get(url, headers={"Accept": DEFAULT})
    assert as_stored.status_code == 200  # the default sends it deflated, as stored
    assert "transfer-syntax=1.2.840.10008.1.2.1.99" in as_stored.headers["content-type"]


async def test_native_frames_need_no_decoding_but_renderings_are_bounded(app: Client) -> None:
    _, http = app
    obj = await store(http, bombs.native_image(800))  # 640 kpixels > 512 k
    frame = await http.get(f"{obj.url}/frames/1", headers={"Accept": NATIVE_FRAMES})
    assert frame.status_code == 200
    _refused(await http.get(f"{obj.url}/rendered"), 413, "pixels", "max_rendered_pixels")
    _refused(await http.get(f"{obj.url}/thumbnail"), 413, "pixels")


async def test_server_answers_other_requests_after_bombs(app: Client) -> None:
    _, http = app
    bomb = await store(http, bombs.rle_bomb(1024, 1024))
    _refused(await http.get(f"{bomb.url}/rendered"), 413)
    ok = await store(http, make_instance(rows=16, columns=16))
    assert (await http.get(f"{ok.url}/rendered")).status_code == 200


# --- class 2: counts that lie are refused at ingest ---


def _lying_files() -> list[bytes]:
    truncated = make_dataset()
    truncated.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    truncated.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\x00\xe0\x00\x00\x00\x70ab"
    truncated.PixelData += b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    truncated["PixelData"].VR = "OB"
    return [
        bombs.rle_header_bomb(),
        make_instance(NumberOfFrames="-1"),
        make_instance(NumberOfFrames="1000000000"),
        to_bytes(truncated),
    ]


async def test_lying_counts_are_refused_at_stow(app: Client) -> None:
    _, http = app
    response = await http.post(
        "/dicom-web/studies", content=multipart(_lying_files()), headers=stow_headers()
    )
    assert response.status_code in (400, 409), response.text
    body = response.json()
    assert "00081199" not in body  # nothing stored
    # refused while parsing, before their UIDs are known: OtherFailuresSequence (PS3.18 I.2)
    failed = body["0008119A"]["Value"]
    assert [item["00081197"]["Value"][0] for item in failed] == [0xC000] * 4


# --- class 2: instances indexed before ingest checked counts ---


async def _legacy(services: Services, obj: Obj, **values: int) -> None:
    """Give ``obj``'s index row the values an instance indexed without the checks could have."""
    async with services.db.write() as conn:
        await conn.execute(
            update(Instance).where(Instance.sop_uid == str(obj.ds.SOPInstanceUID)).values(**values)
        )


async def test_indexed_billion_frames_are_not_enumerated(app: Client) -> None:
    services, http = app
    obj = await store(http, make_instance(rows=8, columns=8, frames=3))
    await _legacy(services, obj, number_of_frames=1_000_000_000)
    pixeldata = await http.get(f"{obj.url}/pixeldata")
    assert pixeldata.status_code == 406, pixeldata.text  # its frame index holds 3 frames
    assert (await http.get(f"{obj.url}/frames/2")).status_code == 406
    assert (await http.get(f"{obj.url}/rendered")).status_code == 200  # from the file itself


async def test_indexed_negative_frame_count_is_a_clear_answer(app: Client) -> None:
    services, http = app
    obj = await store(http, make_instance(rows=8, columns=8, frames=3))
    await _legacy(services, obj, number_of_frames=-1)
    for path in ("pixeldata", "frames/1", "rendered", "thumbnail"):
        response = await http.get(f"{obj.url}/{path}")
        assert response.status_code == 406, (path, response.text)
        assert "NumberOfFrames" in response.json()["detail"] or path == "pixeldata"


async def test_indexed_header_bomb_is_refused_before_its_blob_is_read(app: Client) -> None:
    services, http = app
    obj = await store(http, bombs.rle_bomb(64, 64))
    await _legacy(services, obj, rows=40000, columns=40000)
    async with services.db.read() as conn:
        sop = str(obj.ds.SOPInstanceUID)
        key = (await conn.execute(select(Instance.blob_key).where(Instance.sop_uid == sop))).one()
    await services.store.delete(key[0])  # a read of the blob would fail: the index decides
    _refused(await http.get(f"{obj.url}/rendered"), 413, "40000 x 40000")
    _refused(await http.get(obj.url, headers={"Accept": TRANSCODED}), 406, "40000 x 40000")
    _refused(await http.get(f"{obj.url}/frames/1", headers={"Accept": NATIVE_FRAMES}), 406)

"""Retrieve streaming with large chunks, and the caches of the retrieve path.

The body of a study retrieve is compared byte for byte with the wire form built here from the
stored files (boundaries, part headers, CRLFs), for instances smaller than, equal to and larger
than a read chunk; the multipart writer's coalescing is checked on its own; frame requests
after a DELETE and after a re-store of the same SOP instance with other content must see the
index as it is now, whatever was served (and cached) before.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydicom.uid import generate_uid

from app.api.multipart_writer import COALESCE_BYTES, OutgoingPart, write_multipart
from app.config import DuplicatePolicy
from app.dicom.target import Target
from app.services.container import Services
from tests.conftest import app_client, make_settings
from tests.factories import make_dataset, multipart, stow_headers, to_bytes
from tests.multipart import parse_multipart

ROOT = "/dicom-web"
EVRLE = "1.2.840.10008.1.2.1"
ACCEPT = 'multipart/related; type="application/dicom"'
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def _image(study: str, series: str, number: int, rows: int, columns: int, frames: int = 1) -> bytes:
    ds = make_dataset(
        rows=rows,
        columns=columns,
        frames=frames,
        StudyInstanceUID=study,
        SeriesInstanceUID=series,
        SeriesNumber=1,
        InstanceNumber=number,
    )
    rng = np.random.default_rng(number)
    pixels = rng.integers(0, 4096, size=rows * columns * frames, dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    return to_bytes(ds)


def _wire(boundary: str, parts: list[tuple[str, str, bytes]]) -> bytes:
    """The exact multipart/related body for (content type, location, payload) parts."""
    out = bytearray()
    for content_type, location, payload in parts:
        out += (
            f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-Location: {location}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode("latin-1")
        out += payload + b"\r\n"
    out += f"--{boundary}--\r\n".encode("latin-1")
    return bytes(out)


@pytest.mark.parametrize("chunk_size", [1 << 20, 4 << 20])
async def test_study_body_is_the_stored_files_byte_for_byte(
    database_url: str, tmp_path: Path, chunk_size: int
) -> None:
    """Small, one-chunk and several-chunk instances: the body is exactly the wire form."""
    settings = make_settings(database_url, tmp_path / "data")
    async with app_client(settings) as (services, client):
        services.retrieve.context.chunk_size = chunk_size  # as configured for a deployment
        study, series = str(generate_uid()), str(generate_uid())
        # 8x8 (tiny), 512x512 (0.5 MB: one read), 1100x1100x3 frames (~7 MB: several reads)
        shapes = [(8, 8, 1), (512, 512, 1), (1100, 1100, 3), (16, 16, 1)]
        raws = [_image(study, series, n, r, c, f) for n, (r, c, f) in enumerate(shapes, 1)]
        stored = await client.post(
            f"{ROOT}/studies", content=multipart(raws), headers=stow_headers()
        )
        assert stored.status_code == 200, stored.text
        sops = [_sop(raw) for raw in raws]
        response = await client.get(f"{ROOT}/studies/{study}", headers={"Accept": ACCEPT})
        assert response.status_code == 200
        content_type = response.headers["content-type"]
        boundary = content_type.rpartition("boundary=")[2]
        base = f"{str(client.base_url).rstrip('/')}{ROOT}"
        expected = _wire(
            boundary,
            [
                (
                    f"application/dicom; transfer-syntax={EVRLE}",
                    f"{base}/studies/{study}/series/{series}/instances/{sop}",
                    raw,
                )
                for sop, raw in zip(sops, raws, strict=True)
            ],
        )
        assert response.content == expected
        _, _, parts = parse_multipart(response)
        assert [p.payload for p in parts] == raws


def _sop(raw: bytes) -> str:
    from io import BytesIO

    from pydicom import dcmread

    return str(dcmread(BytesIO(raw), stop_before_pixels=True).SOPInstanceUID)


async def _chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def test_multipart_writer_coalesces_small_pieces_only() -> None:
    """Small pieces are gathered, large ones pass through uncopied; the bytes are the wire form."""
    big = bytes(range(256)) * ((COALESCE_BYTES // 256) + 7)
    small = b"x" * 100
    specs: list[tuple[str, str, list[bytes]]] = [
        ("a/b", "loc1", [small, b"", small]),
        ("a/b", "loc2", [big, small, big]),
        ("a/b", "loc3", []),
        ("a/b", "loc4", [small] * (COALESCE_BYTES // 100 + 3)),
    ]

    async def parts() -> AsyncIterator[OutgoingPart]:
        for content_type, location, pieces in specs:
            total = sum(len(p) for p in pieces)
            yield OutgoingPart(content_type, _chunks(*pieces), location, total)

    out = [chunk async for chunk in write_multipart(parts(), "b0")]
    expected = _wire("b0", [(t, loc, b"".join(p)) for t, loc, p in specs])
    assert b"".join(out) == expected
    assert all(out)
    assert sum(1 for chunk in out if chunk is big) == 2  # sent as they are, not copied
    # 4 parts of headers and small payloads in a handful of chunks, not one per piece
    assert len(out) <= 8


async def _frames(client: httpx.AsyncClient, url: str) -> tuple[int, list[bytes]]:
    response = await client.get(f"{url}/frames/1,2", headers={"Accept": FRAME_ACCEPT})
    if response.status_code != 200:
        return response.status_code, []
    _, _, parts = parse_multipart(response)
    return 200, [p.payload for p in parts]


def _frame_bytes(raw: bytes) -> list[bytes]:
    from io import BytesIO

    from pydicom import dcmread

    ds = dcmread(BytesIO(raw))
    size = ds.Rows * ds.Columns * 2
    return [ds.PixelData[i * size : (i + 1) * size] for i in range(int(ds.NumberOfFrames))]


async def test_frames_after_delete_and_restore(database_url: str, tmp_path: Path) -> None:
    """Frames served (frame index parsed and cached) are not served once the instance is
    deleted (410), and a re-store of the same SOP instance with other pixels serves the new
    ones; an overwrite (STOW-09) with other pixels likewise."""
    settings = make_settings(
        database_url, tmp_path / "data", duplicate_policy=DuplicatePolicy.OVERWRITE
    )
    async with app_client(settings) as (_, client):
        study, series = str(generate_uid()), str(generate_uid())
        ds = make_dataset(
            rows=32,
            columns=32,
            frames=2,
            StudyInstanceUID=study,
            SeriesInstanceUID=series,
        )
        ds.PixelData = np.arange(32 * 32 * 2, dtype=np.uint16).tobytes()
        first = to_bytes(ds)
        url = f"{ROOT}/studies/{study}/series/{series}/instances/{ds.SOPInstanceUID}"
        post = await client.post(
            f"{ROOT}/studies", content=multipart([first]), headers=stow_headers()
        )
        assert post.status_code == 200
        for _ in range(2):  # the second request is served from the cached frame index
            assert await _frames(client, url) == (200, _frame_bytes(first))

        assert (await client.delete(url)).status_code in (200, 204)
        assert (await _frames(client, url))[0] == 410

        # the same SOP instance again, other pixels and a larger header (other offsets)
        ds.PixelData = (np.arange(32 * 32 * 2, dtype=np.uint16) * 3).tobytes()
        ds.SeriesDescription = "a longer description than before, moving the pixel data"
        second = to_bytes(ds)
        post = await client.post(
            f"{ROOT}/studies", content=multipart([second]), headers=stow_headers()
        )
        assert post.status_code == 200, post.text
        assert await _frames(client, url) == (200, _frame_bytes(second))

        # overwrite in place (STOW-09) with other pixels again
        ds.PixelData = (np.arange(32 * 32 * 2, dtype=np.uint16) * 5).tobytes()
        del ds.SeriesDescription
        third = to_bytes(ds)
        post = await client.post(
            f"{ROOT}/studies", content=multipart([third]), headers=stow_headers()
        )
        assert post.status_code == 202, post.text
        assert await _frames(client, url) == (200, _frame_bytes(third))
        response = await client.get(url, headers={"Accept": "application/dicom"})
        assert response.content == third


@pytest.mark.parametrize("level", ["study", "series", "instance", "frames"])
async def test_target_query_driver_path_matches_sqlalchemy(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    """The look-ups run on the driver connection give what SQLAlchemy gives, row for row."""
    from app.index import retrieval

    study, series = str(generate_uid()), str(generate_uid())
    raws = [_image(study, series, n, 8, 8) for n in (3, 1, 2)]
    raws.append(_image(study, str(generate_uid()), 1, 8, 8))
    response = await client.post(f"{ROOT}/studies", content=multipart(raws), headers=stow_headers())
    assert response.status_code == 200
    sop = _sop(raws[0])
    target = {
        "study": Target(study),
        "series": Target(study, series),
        "instance": Target(study, series, sop),
        "frames": Target(study, series, sop, (1,)),  # the frames' instance
    }[level]
    lookups = (
        retrieval.locate,
        retrieval.locate_with_metadata,
        retrieval.locate_hashes,
        retrieval.locate_metadata,
        retrieval.locate_frame_sources,
    )
    direct = [await lookup(services.db, target) for lookup in lookups]
    monkeypatch.setattr(retrieval, "_DIRECT_DRIVERS", frozenset())
    through_sqlalchemy = [await lookup(services.db, target) for lookup in lookups]
    assert direct == through_sqlalchemy
    assert len(direct[0]) == {"study": 4, "series": 3, "instance": 1, "frames": 1}[level]

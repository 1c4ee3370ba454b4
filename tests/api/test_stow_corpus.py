"""Every file shipped by pydicom and pydicom-data through STOW-RS (issue: archive core, tests).

Each file is stored (and the stored bytes equal the uploaded bytes) or refused with a documented
FailureReason; none gives a 500.
"""

import hashlib

import httpx
import pytest
from sqlalchemy import select

from app.index.models import Instance
from app.services.container import Services
from tests.corpus import corpus
from tests.factories import multipart, stow_headers

DOCUMENTED = {0xC000, 0xC122, 0xA700, 0x0110, 0x0111}


def test_corpus_is_large() -> None:
    """pydicom-data is installed: the corpus has its ~70 extra files."""
    assert len(corpus()) > 150


async def test_every_corpus_file(client: httpx.AsyncClient, services: Services) -> None:
    outcomes: dict[str, str] = {}
    for path in corpus():
        raw = path.read_bytes()
        response = await client.post(
            "/dicom-web/studies", content=multipart([raw]), headers=stow_headers()
        )
        assert response.status_code in (200, 202, 400, 409), (path.name, response.status_code)
        body = response.json()
        stored = body.get("00081199", {}).get("Value", [])
        failed = body.get("00081198", {}).get("Value", []) + body.get("0008119A", {}).get(
            "Value", []
        )
        if stored:
            sop = stored[0]["00081155"]["Value"][0]
            async with services.db.read() as conn:
                row = (await conn.execute(select(Instance).where(Instance.sop_uid == sop))).one()
            if row.sha256 == hashlib.sha256(raw).hexdigest():
                data = b"".join([c async for c in services.store.open(row.blob_key)])
                assert data == raw, path.name
                outcomes[path.name] = "stored"
            else:  # another corpus file with the same SOP Instance UID was stored first
                outcomes[path.name] = "duplicate of an earlier file"
        else:
            [item] = failed
            reason = item["00081197"]["Value"][0]
            assert reason in DOCUMENTED, (path.name, hex(reason))
            outcomes[path.name] = f"refused {reason:#06x}"
    stored_count = sum(1 for v in outcomes.values() if v == "stored")
    assert stored_count > 100, outcomes


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_bigendian.dcm",
        "image_dfl.dcm",
        "JPGExtended.dcm",
        "SC_rgb_rle_2frame.dcm",
        "chrH31.dcm",
    ],
)
async def test_named_fixtures_are_stored(client: httpx.AsyncClient, name: str) -> None:
    """TEST-01 encodings and character sets are accepted."""
    [path] = [p for p in corpus() if p.name == name]
    response = await client.post(
        "/dicom-web/studies", content=multipart([path.read_bytes()]), headers=stow_headers()
    )
    assert response.status_code == 200, response.text

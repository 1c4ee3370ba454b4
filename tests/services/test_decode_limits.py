"""Issue 19 in the services, on PostgreSQL and SQLite: ingest refuses lying counts with their
reason and stores consistent bombs; retrieve plans from the index values what may be decoded."""

from io import BytesIO

from pydicom import dcmread

from app.dicom.decoding import DecodeLimits
from app.dicom.status import Status
from app.dicom.target import Target
from app.services.container import Services
from app.services.retrieve import decode_refusal, index_shape, select
from tests import bombs
from tests.factories import make_instance
from tests.ingested import ingest

EVRLE = "1.2.840.10008.1.2.1"
RLE = "1.2.840.10008.1.2.5"


async def _ingest(services: Services, *files: bytes) -> list[tuple[bool, int | None, str]]:
    result = await ingest(services, *files)
    return [(o.stored, o.failure, o.message) for o in result.outcomes]


async def test_ingest_refuses_lying_counts_with_their_reason(services: Services) -> None:
    outcomes = await _ingest(
        services,
        make_instance(NumberOfFrames="-1"),
        make_instance(rows=8, columns=8, NumberOfFrames="1000000000"),
        bombs.rle_header_bomb(),
        make_instance(rows=8, columns=8, frames=2),
    )
    assert outcomes[0] == (False, Status.CANNOT_UNDERSTAND, outcomes[0][2])
    assert "NumberOfFrames is -1" in outcomes[0][2]
    assert "fewer than the 128000000000" in outcomes[1][2]
    assert "RLE frame has 1 segments" in outcomes[2][2]
    assert outcomes[3] == (True, None, "")


async def test_consistent_bombs_are_stored_and_planned_as_stored(services: Services) -> None:
    raw = bombs.rle_bomb(1024, 1024)  # 2 MiB decoded
    [(stored, _, _)] = await _ingest(services, raw)
    assert stored
    [ref] = await services.retrieve.resolve(Target(*_uids(raw)))
    small = DecodeLimits(frame_bytes=1 << 20, instance_bytes=1 << 20)
    refusal = decode_refusal(ref, small)
    assert refusal is not None
    assert "2097152 bytes" in refusal
    assert decode_refusal(ref, DecodeLimits()) is None
    # the default goes out as stored, Explicit VR Little Endian asked for is left out (WADO-03)
    assert [p.transfer_syntax for p in select([ref], None, small).items] == [RLE]
    assert select([ref], EVRLE, small).omitted == 1
    assert [p.transfer_syntax for p in select([ref], None, DecodeLimits()).items] == [EVRLE]


def test_index_shape_is_a_lower_bound_from_the_index_values() -> None:
    shape = index_shape(512, 512, 16, 3)
    assert shape is not None
    assert (shape.samples_per_pixel, shape.frame_bytes, shape.total_bytes) == (1, 1 << 19, 3 << 19)
    assert index_shape(512, 512, 16, -1) == index_shape(512, 512, 16, 1)  # indexed before checks
    assert index_shape(None, 512, 16, 1) is None


def _uids(raw: bytes) -> tuple[str, str, str]:
    ds = dcmread(BytesIO(raw), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)

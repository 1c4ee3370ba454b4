"""The retrieve service's use cases, each one call from a typed request (app.services.retrieve),
on PostgreSQL and SQLite: what the answer holds before any part is written, the read-ahead of
the next blob, frames, metadata and bulk data, as a DIMSE front end would call them."""

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import event

from app.dicom.target import Target
from app.errors import NotAcceptable, NotFound
from app.index import retrieval
from app.services.container import Services
from app.services.retrieve import (
    Acceptable,
    Accepted,
    BulkRequest,
    InstancesRequest,
    MetadataRequest,
    PixelsRequest,
    RetrieveService,
)
from tests.factories import make_dataset, to_bytes
from tests.ingested import store

EVRLE = "1.2.840.10008.1.2.1"
DICOM = "application/dicom"
OCTETS = "application/octet-stream"
#: what a DIMSE front end would pass: the syntaxes of its presentation contexts, one group
AS_STORED = Accepted.of(Acceptable(DICOM, "*"))


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
    ds.PixelData = _pixels(number, rows * columns * frames).tobytes()
    return to_bytes(ds)


def _pixels(number: int, size: int) -> np.ndarray:
    return np.random.default_rng(number).integers(0, 4096, size=size, dtype=np.uint16)


def _sop(raw: bytes) -> str:
    from io import BytesIO

    from pydicom import dcmread

    return str(dcmread(BytesIO(raw), stop_before_pixels=True).SOPInstanceUID)


async def test_open_reads_a_small_blob_as_one_chunk(services: Services) -> None:
    """A blob under the chunk size comes out in one piece; a larger one in bounded chunks."""
    study, series = str(generate_uid()), str(generate_uid())
    small = _image(study, series, 1, 64, 64)
    large = _image(study, series, 2, 1024, 1024, 2)
    await store(services, small, large)
    retrieve = RetrieveService(services.db, services.store, chunk_size=1 << 20)
    refs = await retrieve.resolve(Target(study))
    payload = await retrieve.open(refs[0])
    assert [chunk async for chunk in payload.chunks] == [small]
    payload = await retrieve.open(refs[1])
    chunks = [chunk async for chunk in payload.chunks]
    assert b"".join(chunks) == large
    assert all(0 < len(c) <= 1 << 20 for c in chunks)


async def test_instances_answer_is_decided_before_the_parts(services: Services) -> None:
    """One call: the parts' heads (media type, length, instance) are known before any part is
    read, in WADO-01 order, and the parts hold the stored files."""
    study, series = str(generate_uid()), str(generate_uid())
    raws = [_image(study, series, n, 16, 16) for n in (2, 1)]
    await store(services, *raws)
    answer = await services.retrieve.instances(InstancesRequest(Target(study), AS_STORED))
    assert (answer.media_type, answer.transfer_syntax, answer.whole) == (DICOM, EVRLE, False)
    assert answer.omission is None
    assert answer.heads is not None
    assert [h.instance for h in answer.heads] == [
        Target(study, series, _sop(raw)) for raw in reversed(raws)
    ]
    assert {h.media_type for h in answer.heads} == {f"{DICOM}; transfer-syntax={EVRLE}"}
    bodies = [(p.head, b"".join([c async for c in p.chunks])) async for p in answer.parts]
    assert [body for _, body in bodies] == list(reversed(raws))
    assert [head for head, _ in bodies] == list(answer.heads)


async def test_instances_refusals_come_from_the_call(services: Services) -> None:
    """404 for an unknown target, 406 for a syntax no instance can be sent in; a single
    instance may be asked for alone, a series may not."""
    study, series = str(generate_uid()), str(generate_uid())
    raw = _image(study, series, 1, 8, 8)
    await store(services, raw)
    with pytest.raises(NotFound, match="no such series"):
        await services.retrieve.instances(
            InstancesRequest(Target(study, str(generate_uid())), AS_STORED)
        )
    jpeg = Accepted.of(Acceptable(DICOM, "1.2.840.10008.1.2.4.50"))
    with pytest.raises(NotAcceptable, match="no instance can be returned"):
        await services.retrieve.instances(InstancesRequest(Target(study), jpeg))
    alone = Accepted.of(Acceptable(DICOM, None, whole=True))
    with pytest.raises(NotAcceptable, match="acceptable: multipart/related"):
        await services.retrieve.instances(InstancesRequest(Target(study, series), alone))
    instance = Target(study, series, _sop(raw))
    answer = await services.retrieve.instances(InstancesRequest(instance, alone))
    assert answer.whole
    [part] = [p async for p in answer.parts]
    assert b"".join([c async for c in part.chunks]) == raw


def _open_files_under(root: Path) -> int:
    """How many of this process's file descriptors point below ``root``."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed between listing and reading
            continue
        count += target.startswith(str(root))
    return count


async def test_next_part_opened_ahead_is_released_when_the_client_goes(
    services: Services, tmp_path: Path
) -> None:
    """Part N+1 is opened while part N is sent; a stream abandoned after part 1 closes both."""
    study, series = str(generate_uid()), str(generate_uid())
    raws = [_image(study, series, n, 512, 512) for n in (1, 2, 3)]
    await store(services, *raws)
    # chunks smaller than a blob: an opened blob keeps its file open until read to the end
    retrieve = RetrieveService(services.db, services.store, chunk_size=64 << 10)
    request = InstancesRequest(Target(study), Accepted.of(Acceptable(DICOM)))
    answer = await retrieve.instances(request)
    part = await anext(answer.parts)
    await asyncio.sleep(0.1)  # the read-ahead of part 2 runs meanwhile
    blobs = tmp_path / "data" / "blobs"
    assert _open_files_under(blobs) == 2  # part 1 being sent, part 2 opened ahead
    assert b"".join([c async for c in part.chunks]) == raws[0]
    await answer.aclose()
    assert _open_files_under(blobs) == 0

    # read to the end, the parts come in order with their bytes
    answer = await retrieve.instances(request)
    bodies = [b"".join([c async for c in p.chunks]) async for p in answer.parts]
    assert bodies == raws
    assert _open_files_under(blobs) == 0


async def test_frames_and_pixel_data(services: Services) -> None:
    """Frames in the order asked, one alone when asked for alone; pixel data of a study is
    every frame of every instance, each part naming its frame."""
    study, series = str(generate_uid()), str(generate_uid())
    raws = [_image(study, series, 1, 4, 4, frames=3), _image(study, series, 2, 4, 4)]
    await store(services, *raws)
    sop = _sop(raws[0])
    pixels = _pixels(1, 4 * 4 * 3).reshape(3, 16)
    octets = Accepted.of(Acceptable(OCTETS, "*"))
    answer = await services.retrieve.pixels(
        PixelsRequest(Target(study, series, sop, (3, 1)), octets)
    )
    assert (answer.media_type, answer.transfer_syntax, answer.whole) == (OCTETS, EVRLE, False)
    parts = [(p.head.location, b"".join([c async for c in p.chunks])) async for p in answer.parts]
    assert parts == [("/frames/3", pixels[2].tobytes()), ("/frames/1", pixels[0].tobytes())]

    alone = Accepted.of(Acceptable(OCTETS, None, whole=True))
    answer = await services.retrieve.pixels(PixelsRequest(Target(study, series, sop, (2,)), alone))
    assert answer.whole
    [part] = [p async for p in answer.parts]
    assert part.head.media_type == f"{OCTETS}; transfer-syntax={EVRLE}"

    answer = await services.retrieve.pixels(PixelsRequest(Target(study), octets))
    locations = [(p.head.instance.sop_uid, p.head.location) async for p in answer.parts]
    other = _sop(raws[1])
    assert locations == [
        (sop, "/frames/1"),
        (sop, "/frames/2"),
        (sop, "/frames/3"),
        (other, "/frames/1"),
    ]
    with pytest.raises(NotFound, match="frame 4 does not exist"):
        await services.retrieve.pixels(PixelsRequest(Target(study, series, sop, (4,)), octets))


async def test_metadata_current_copy_and_bulk(services: Services) -> None:
    """A caller whose copy is current gets the tag without a body; bulk values come as parts
    whose location is their BulkDataURI."""
    study, series = str(generate_uid()), str(generate_uid())
    raw = _image(study, series, 1, 64, 64)
    await store(services, raw)
    request = MetadataRequest(Target(study), "http://h/dw")
    document = await services.retrieve.metadata(request)
    assert document.body is not None
    assert document.body.startswith(b"[{")
    again = await services.retrieve.metadata(
        MetadataRequest(Target(study), "http://h/dw", current={document.etag})
    )
    assert (again.etag, again.body) == (document.etag, None)
    zipped = await services.retrieve.metadata(
        MetadataRequest(Target(study), "http://h/dw", gzipped=True, current={document.etag})
    )
    assert (zipped.etag, zipped.body) == (document.etag[:-1] + '-gzip"', None)

    answer = await services.retrieve.bulk(
        BulkRequest(Target(study), Accepted.of(Acceptable("*/*")))
    )
    parts = [p async for p in answer.parts]
    assert [p.head.location for p in parts] == ["/bulkdata/7FE00010"]
    assert parts[0].head.instance == Target(study, series, _sop(raw))


@contextmanager
def _index_statements(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement the index runs meanwhile: the retrieve look-ups, which go to the driver
    connection directly (:class:`~app.index.retrieval.TargetQuery`), and any other through
    SQLAlchemy."""
    seen: list[str] = []
    rows = retrieval.TargetQuery.rows

    async def counted(self: retrieval.TargetQuery, db: Any, target: Target) -> Any:
        seen.append(f"look-up of a {target.level.value}")
        return await rows(self, db, target)

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.append(sql)

    monkeypatch.setattr(retrieval.TargetQuery, "rows", counted)
    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", statement)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", statement)


async def test_a_study_is_one_index_query_like_a_series(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20 point 8: a study streams as its series do. One look-up finds every instance of
    the study (no query per series or per instance), and the parts come in WADO-01 order
    across its series, each blob opened ahead of its turn."""
    study = str(generate_uid())
    series = [str(generate_uid()) for _ in range(3)]
    raws = {se: [_image(study, se, n, 8, 8) for n in (1, 2)] for se in series}
    for number, se in enumerate(series, 1):
        for raw in raws[se]:
            await store(services, _renumbered(raw, number))
    for target in (Target(study), Target(study, series[1])):
        with _index_statements(services, monkeypatch) as statements:
            answer = await services.retrieve.instances(InstancesRequest(target, AS_STORED))
            parts = [(p.head.instance, [c async for c in p.chunks]) async for p in answer.parts]
        assert statements == [f"look-up of a {target.level.value}"]
        wanted = series if target.series_uid is None else [target.series_uid]
        assert [instance.series_uid for instance, _ in parts] == [
            se for se in wanted for _ in (1, 2)
        ]


def _renumbered(raw: bytes, series_number: int) -> bytes:
    """``raw`` with its SeriesNumber set (WADO-01 orders series by it)."""
    from io import BytesIO

    from pydicom import dcmread

    ds = dcmread(BytesIO(raw))
    ds.SeriesNumber = series_number
    return to_bytes(ds)


async def test_instances_for_presentation_contexts(services: Services) -> None:
    """What a C-GET/C-MOVE asks: each instance on its own SOP class's contexts, as stored when
    one takes the stored syntax (Implicit VR included: NEG-08 is a web rule), else transcoded,
    else left out; an instance whose blob is gone is a failed part, the others follow."""
    from pydicom.uid import CTImageStorage, MRImageStorage

    study, series = str(generate_uid()), str(generate_uid())
    implicit = make_dataset("1.2.840.10008.1.2", StudyInstanceUID=study, SeriesInstanceUID=series,
                            SeriesNumber=1, InstanceNumber=1)  # fmt: skip
    explicit = make_dataset(StudyInstanceUID=study, SeriesInstanceUID=series, SeriesNumber=1,
                            InstanceNumber=2)  # fmt: skip
    gone = make_dataset(StudyInstanceUID=study, SeriesInstanceUID=series, SeriesNumber=1,
                        InstanceNumber=3)  # fmt: skip
    mr = make_dataset(StudyInstanceUID=study, SeriesInstanceUID=series, SeriesNumber=1,
                      InstanceNumber=4, SOPClassUID=MRImageStorage)  # fmt: skip
    raws = [to_bytes(ds) for ds in (implicit, explicit, gone, mr)]
    await store(services, *raws)
    [ref] = [
        r
        for r in await services.retrieve.resolve(Target(study))
        if r.sop_uid == gone.SOPInstanceUID
    ]
    await services.store.delete(ref.blob_key)

    accepted = Accepted.contexts([(CTImageStorage, "1.2.840.10008.1.2")])
    answer = await services.retrieve.instances(InstancesRequest(Target(study), accepted))
    assert [t.sop_uid for t in answer.left_out] == [mr.SOPInstanceUID]
    parts = [(p.head, p.failure, b"".join([c async for c in p.chunks])) async for p in answer.parts]
    assert [head.instance.sop_uid for head, _, _ in parts] == [
        implicit.SOPInstanceUID,
        explicit.SOPInstanceUID,
        gone.SOPInstanceUID,
    ]
    (h1, f1, b1), (h2, f2, b2), (_, f3, b3) = parts
    assert (h1.media_type, f1, b1) == (f"{DICOM}; transfer-syntax=1.2.840.10008.1.2", None, raws[0])
    assert h2.media_type == f"{DICOM}; transfer-syntax=1.2.840.10008.1.2"  # re-encoded
    assert (f2, b2 == raws[1]) == (None, False)
    assert (f3 is None, b3) == (False, b"")
    with pytest.raises(NotAcceptable, match="presentation contexts"):
        await services.retrieve.instances(
            InstancesRequest(Target(study), Accepted.contexts([("1.2.3", EVRLE)]))
        )

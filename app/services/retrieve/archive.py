"""Studies and series as a PS3.10 file-set: a streamed ZIP archive (WADO-RS ``Accept:
application/zip``, PS3.18 §8.6.1.3 and Table 10.4.4-1) or a directory (``lightbox export``).

The file-set is planned from the index alone (:meth:`ArchiveRetrieval.plan`): the instances of
each target in WADO-01 order, each under a PS3.10 File ID (``PTnnnnnn/STnnnnnn/SEnnnnnn/IMnnnnnn``)
and the DICOMDIR at the root, built from the stored study, series and instance attributes
(:mod:`app.dicom.dicomdir`, which says why not with ``FileSet.write``). The blobs are then
streamed from the object store as stored (a prefix added to a blob stored without its PS3.10
preamble, like every WADO-RS part), the next one opened while the current one drains
(:func:`~.instances.read_ahead`): memory is one chunk ahead plus a few hundred bytes of DICOMDIR
record per instance, whatever the size of the study.

The ZIP is written by :mod:`zipfile` into a sink that only collects what it is given, so the
archive streams: each entry is *stored* (no compression: DICOM pixel data is compressed already
or does not shrink enough to be worth the CPU at 300 MB/s), its local header written before its
bytes with the sizes and CRC-32 in a data descriptor after them (PS ZIP APPNOTE §4.3.9), ZIP64
where a size or offset needs it; the blob chunks are handed to the sink as read, never copied.
"""

import contextlib
import os
import time
import zipfile
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread

from app.dicom.dicomdir import DICOMDIR, FileSetBuilder, Leaf, header_from_json, leaf_record_type
from app.dicom.target import Target
from app.index.media import (
    MediaRow,
    instance_metadata,
    locate_media,
    series_attributes,
    study_attributes,
)
from app.index.retrieval import InstanceRef
from app.services.retrieve.context import RetrieveContext, close
from app.services.retrieve.instances import read_ahead
from app.services.retrieve.plan import Planned, stored_length
from app.services.retrieve.requests import Part
from app.storage.base import StorageError

__all__ = [
    "ZIP",
    "Archive",
    "ArchiveRetrieval",
    "MediaFile",
    "MediaPlan",
    "check_directory",
    "zip_chunks",
]

ZIP: Final = "application/zip"


@dataclass(frozen=True, slots=True)
class MediaFile:
    """One instance of a file-set and its File ID (components joined by ``/``)."""

    file_id: str
    ref: InstanceRef


@dataclass(slots=True)
class MediaPlan:
    """A file-set ready to write: its DICOMDIR and its files in order."""

    targets: list[Target]
    dicomdir: bytes
    files: list[MediaFile]
    #: the PatientID of each study exported (for the audit)
    patients: dict[str, str | None]

    @property
    def size(self) -> int:
        """The bytes of the instances (the index's sizes), without the DICOMDIR."""
        return sum(stored_length(f.ref) or f.ref.size for f in self.files)


@dataclass(slots=True)
class Archive:
    """A ZIP archive being sent: its bytes, read while they are written."""

    chunks: AsyncIterator[bytes]
    count: int
    filename: str

    async def aclose(self) -> None:
        """Release what the archive holds (abandoned before it was written)."""
        await close(self.chunks)


class ArchiveRetrieval:
    """The archive use cases over a :class:`~.context.RetrieveContext`."""

    def __init__(self, context: RetrieveContext) -> None:
        self._context = context

    async def plan(self, targets: Sequence[Target]) -> MediaPlan:
        """The file-set of ``targets`` (studies or series), each instance once; the first
        target not held raises :class:`NotFound` (or :class:`Gone` while its tombstone lives)."""
        db = self._context.db
        rows: list[MediaRow] = []
        seen: set[str] = set()
        for target in targets:
            found = await locate_media(db, target)
            if not found:
                raise await self._context.absent(target)
            for row in found:
                if row.ref.sop_uid not in seen:
                    seen.add(row.ref.sop_uid)
                    rows.append(row)
        studies = await study_attributes(db, {row.ref.study_uid for row in rows})
        series = await series_attributes(db, {row.ref.series_uid for row in rows})
        special = [r.ref.sop_uid for r in rows if leaf_record_type(r.sop_class_uid) != "IMAGE"]
        headers = await instance_metadata(db, special) if special else {}
        dicomdir, file_ids, patients = await anyio.to_thread.run_sync(
            _build, rows, studies, series, headers
        )
        files = [MediaFile(fid, row.ref) for fid, row in zip(file_ids, rows, strict=True)]
        return MediaPlan(list(targets), dicomdir, files, patients)

    async def parts(self, plan: MediaPlan) -> AsyncIterator[Part]:
        """The instances of ``plan`` as stored, in its order; the first is opened before this
        returns (so a missing blob fails before the first byte, STYLE.md C5)."""
        planned = [Planned(f.ref, f.ref.transfer_syntax_uid) for f in plan.files]
        first = await self._context.open(planned[0].ref, planned[0].transfer_syntax)
        return read_ahead(self._context, first, planned[1:])

    async def archive(self, plan: MediaPlan, filename: str) -> Archive:
        """``plan`` as a ZIP archive (the first blob opened before this returns)."""
        parts = await self.parts(plan)
        return Archive(zip_chunks(plan, parts), len(plan.files), filename)

    async def write_zip(self, plan: MediaPlan, path: Path) -> int:
        """Write ``plan`` as a ZIP file at ``path`` (first as ``path.partial``, renamed when
        complete); returns its size."""
        partial = path.with_name(path.name + ".partial")
        written = 0
        parts = await self.parts(plan)
        try:
            async with await anyio.open_file(partial, "wb") as out:
                async for chunk in zip_chunks(plan, parts):
                    await out.write(chunk)
                    written += len(chunk)
                await out.flush()
                await anyio.to_thread.run_sync(os.fsync, out.wrapped.fileno())
            await anyio.Path(partial).rename(path)
        except BaseException:
            with contextlib.suppress(OSError):
                await anyio.Path(partial).unlink()
            raise
        return written

    async def write_directory(self, plan: MediaPlan, root: Path) -> int:
        """Write ``plan`` as a file-set under ``root`` (created; it must not exist or be empty):
        every file under its File ID, then the DICOMDIR (its absence marks an unfinished
        export). Returns the bytes written."""
        await anyio.to_thread.run_sync(_prepare_root, root)
        written = 0
        parts = await self.parts(plan)
        try:
            async for file, part in _paired(plan.files, parts):
                target = root.joinpath(*file.file_id.split("/"))
                await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
                async with await anyio.open_file(target, "wb") as out:
                    async for chunk in part.chunks:
                        await out.write(chunk)
                        written += len(chunk)
        finally:
            await close(parts)
        await anyio.Path(root / DICOMDIR).write_bytes(plan.dicomdir)
        return written + len(plan.dicomdir)


def check_directory(root: Path) -> None:
    """Refuse a directory export to ``root`` unless it is new or empty (FileExistsError)."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not an empty directory")


def _prepare_root(root: Path) -> None:
    check_directory(root)
    root.mkdir(parents=True, exist_ok=True)


async def _paired(
    files: Sequence[MediaFile], parts: AsyncIterator[Part]
) -> AsyncGenerator[tuple[MediaFile, Part], None]:
    """Each file with its part (the parts come in the plan's order)."""
    index = 0
    async for part in parts:
        file = files[index]
        if part.head.instance.sop_uid != file.ref.sop_uid:  # pragma: no cover - a bug
            raise StorageError("the instances did not come in the planned order")
        yield file, part
        index += 1


class _Sink:
    """A write-only file object that keeps what it is given until :meth:`take` (what
    :class:`zipfile.ZipFile` writes into, unseekable: it then writes data descriptors)."""

    __slots__ = ("_pieces",)

    def __init__(self) -> None:
        self._pieces: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._pieces.append(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> list[bytes]:
        pieces, self._pieces = self._pieces, []
        return pieces


def _entry(name: str, size: int, stamp: tuple[int, int, int, int, int, int]) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size  # known in advance: ZIP64 headers when it needs them
    info.external_attr = 0o644 << 16
    return info


async def zip_chunks(plan: MediaPlan, parts: AsyncIterator[Part]) -> AsyncGenerator[bytes, None]:
    """The ZIP archive of ``plan``, the DICOMDIR first, then each instance as its part streams
    (``parts`` in the plan's order; closed when this ends, or is closed early)."""
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True)  # type: ignore[call-overload]
    stamp = time.localtime()[:6]
    try:
        archive.writestr(_entry(DICOMDIR, len(plan.dicomdir), stamp), plan.dicomdir)
        for piece in sink.take():
            yield piece
        async for file, part in _paired(plan.files, parts):
            size = part.head.length if part.head.length is not None else file.ref.size
            with archive.open(_entry(file.file_id, size, stamp), "w") as entry:
                for piece in sink.take():
                    yield piece
                async for chunk in part.chunks:
                    entry.write(chunk)
                    for piece in sink.take():
                        yield piece
            for piece in sink.take():
                yield piece
        archive.close()
        for piece in sink.take():
            yield piece
    finally:
        await close(parts)


def _build(
    rows: Sequence[MediaRow],
    studies: dict[str, bytes],
    series: dict[str, bytes],
    headers: dict[str, bytes],
) -> tuple[bytes, list[str], dict[str, str | None]]:
    """The DICOMDIR and the File IDs of ``rows`` (CPU work: run in a thread)."""
    builder = FileSetBuilder()
    study_sets = {uid: header_from_json(data) for uid, data in studies.items()}
    series_sets = {uid: header_from_json(data) for uid, data in series.items()}
    file_ids: list[str] = []
    for row in rows:
        ref = row.ref
        study = study_sets[ref.study_uid]
        if "StudyInstanceUID" not in study:
            study.StudyInstanceUID = ref.study_uid
        one = series_sets[ref.series_uid]
        if "SeriesInstanceUID" not in one:
            one.SeriesInstanceUID = ref.series_uid
        header = headers.get(ref.sop_uid)
        leaf = Leaf(
            row.sop_class_uid,
            ref.sop_uid,
            ref.transfer_syntax_uid,
            row.instance_number,
            header_from_json(header) if header is not None else None,
        )
        file_ids.append(builder.add(study, one, leaf))
    patients = {uid: (str(ds.get("PatientID") or "") or None) for uid, ds in study_sets.items()}
    return builder.encode(), file_ids, patients

"""``lightbox import``'s use case on both index databases: trees, archives and media with the bad
input of issue 23 (non-DICOM files, truncated DICOM, a zip bomb, symbolic link loops, unreadable
files, duplicates and conflicting patients), the journal and the report.

Unreadable files: the tests run as root in CI, and root reads a file whatever its mode, so
``chmod 000`` proves nothing there. What no one can read is made instead: a FIFO (opening it
would block: it must never be opened), a socket, a dangling symbolic link, and a path that does
not exist.
"""

import csv
import io
import os
import socket
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from app.dicom.dicomdir import FileSetBuilder, Leaf
from app.dicom.status import Status
from app.index.audit.events import AuditFilter
from app.index.imports import ImportJournal
from app.index.models import Instance, Study
from app.services.container import Services
from app.services.imports import ImportOptions, ImportProgress, RefusalReport
from app.services.imports.pipeline import _stepped
from app.services.ingest import IngestService
from tests.factories import make_dataset, make_instance

ACTOR = "cli:tester"


async def _import(
    services: Services,
    paths: list[Path],
    tmp_path: Path,
    *,
    journal: ImportJournal | None = None,
    dry_run: bool = False,
) -> tuple[ImportProgress, list[dict[str, str]]]:
    report = RefusalReport(tmp_path / "report.csv")
    own = journal is None
    journal = journal or ImportJournal(tmp_path / "journal.sqlite", "test")
    imports = services.imports
    try:
        progress = await imports.run(
            paths,
            sink=lambda settle: imports.local_sink(settle, actor=ACTOR, chunk=8),
            journal=journal,
            report=report,
            progress=ImportProgress(),
            options=ImportOptions(jobs=3, dry_run=dry_run),
        )
    finally:
        report.close()
        if own:
            journal.close()
    with (tmp_path / "report.csv").open(newline="") as rows:
        return progress, list(csv.DictReader(rows))


async def _count(services: Services) -> int:
    async with services.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(Instance))).scalar_one())


def _reasons(rows: list[dict[str, str]]) -> dict[str, str]:
    return {
        Path(row["source"].split("!")[0]).name + ("!" if "!" in row["source"] else ""): row[
            "reason"
        ]
        for row in rows
    }


async def test_a_tree_of_files_and_archives(services: Services, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    study = generate_uid()
    files = [make_instance(StudyInstanceUID=study, InstanceNumber=i) for i in range(12)]
    for i, raw in enumerate(files[:6]):
        (tree / "a" / "b" / f"IM{i}").write_bytes(raw)  # no extension, as on media
    (tree / "notes.txt").write_text("not an image")
    (tree / "empty.dcm").write_bytes(b"")
    (tree / "header-cut.dcm").write_bytes(files[0][:200])
    cut = make_instance(StudyInstanceUID=study, rows=64, columns=64)
    (tree / "pixels-cut.dcm").write_bytes(cut[: len(cut) - 1000])
    with zipfile.ZipFile(tree / "some.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for i, raw in enumerate(files[6:9]):
            archive.writestr(f"dir/{i}.dcm", raw)
        archive.writestr("README", "a readme")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for i, raw in enumerate(files[9:]):
            info = tarfile.TarInfo(f"t/{i}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    (tree / "more.tar.gz").write_bytes(buffer.getvalue())

    dry, _ = await _import(services, [tree], tmp_path, dry_run=True)
    assert dry.candidates == 14
    assert await _count(services) == 0

    journal = ImportJournal(tmp_path / "journal.sqlite", "test")
    progress, rows = await _import(services, [tree], tmp_path, journal=journal)
    assert progress.stored == 12
    assert progress.archives == 2
    assert await _count(services) == 12
    reasons = _reasons(rows)
    assert reasons["notes.txt"].startswith("not a DICOM file")
    assert reasons["empty.dcm"] == "empty file"
    assert reasons["some.zip!"].startswith("not a DICOM file")  # its README
    assert "header-cut.dcm" in reasons
    assert "pixels-cut.dcm" in reasons
    statuses = {Path(r["source"]).name: r["status"] for r in rows}
    assert statuses["pixels-cut.dcm"].startswith("0xC")  # refused by ingest, with its status
    assert progress.refused == 2
    assert progress.not_dicom == 3

    # a re-run skips what is done unread: the files, and both archives (every member stored,
    # or no DICOM: a README does not keep its archive from being done); the refused are read
    # again, and refused again
    again, rows = await _import(services, [tree], tmp_path, journal=journal)
    journal.close()
    assert (again.stored, again.existing) == (0, 0)
    assert again.skipped == 6 + 2
    assert again.refused == 2
    assert again.not_dicom == 2
    assert len(rows) == 4
    assert await _count(services) == 12


async def test_a_zip_bomb_is_refused_unread(services: Services, tmp_path: Path) -> None:
    limit = 1 << 20
    ingest = services.ingest
    services.imports._ingest = IngestService(
        ingest.db, ingest.store, replace(ingest.policy, max_instance_bytes=limit), ingest.spool_dir
    )
    head = make_instance()
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("huge.dcm", head + bytes(64 << 20))  # 64 MiB of zeros: ~64 KiB
        archive.writestr("fine.dcm", make_instance())
    # a second bomb whose headers lie: 64 MiB declared as 1000 bytes
    liar = tmp_path / "liar.zip"
    raw = bytearray(bomb.read_bytes())
    size = (len(head) + (64 << 20)).to_bytes(4, "little")
    for at in [i for i in range(len(raw)) if raw.startswith(size, i)]:
        raw[at : at + 4] = (1000).to_bytes(4, "little")
    liar.write_bytes(raw)

    progress, rows = await _import(services, [bomb, liar], tmp_path)
    reasons = {r["source"].rsplit("/", 1)[-1]: r["reason"] for r in rows}
    assert "zip bomb" in reasons["bomb.zip!huge.dcm"]
    # zipfile inflates no more than the declared size: the member ends there, its CRC fails
    assert reasons["liar.zip!huge.dcm"].startswith("corrupt ZIP member")
    assert progress.stored == 1
    assert progress.existing == 1
    assert await _count(services) == 1


async def test_links_fifos_sockets_and_missing_paths(services: Services, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "ok.dcm").write_bytes(make_instance())
    (tree / "d" / "up").symlink_to(tree)  # a loop through an ancestor
    (tree / "self").symlink_to(tree / "self")  # ELOOP
    (tree / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tree / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tree / "sock"))
        progress, rows = await _import(services, [tree, tmp_path / "absent"], tmp_path)
    reasons = {Path(r["source"]).name: r["reason"] for r in rows}
    assert reasons["up"].startswith("symbolic link loop")
    assert reasons["self"] == "symbolic link loop"
    assert reasons["dangling"] == "dangling symbolic link"
    assert reasons["fifo"].startswith("a FIFO")
    assert reasons["sock"].startswith("a socket")
    assert reasons["absent"] == "no such file or directory"
    assert progress.stored == 1
    assert await _count(services) == 1


async def test_duplicates_and_conflicting_patients(services: Services, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    study, sop = generate_uid(), generate_uid()
    original = make_instance(StudyInstanceUID=study, SOPInstanceUID=sop, PatientID="P1")
    (tree / "one.dcm").write_bytes(original)
    (tree / "copy.dcm").write_bytes(original)
    other = make_instance(
        StudyInstanceUID=study, SOPInstanceUID=sop, PatientID="P1", SeriesDescription="changed"
    )
    conflict = make_instance(StudyInstanceUID=study, PatientID="SOMEONE-ELSE")
    first, _ = await _import(services, [tree], tmp_path / "1")
    assert (first.stored, first.existing) == (1, 1)  # the copy is the same instance

    (tree / "other.dcm").write_bytes(other)
    (tree / "conflict.dcm").write_bytes(conflict)
    second, rows = await _import(services, [tree], tmp_path / "2")
    statuses = {Path(r["source"]).name: int(r["status"], 16) for r in rows}
    assert statuses == {
        "other.dcm": Status.DUPLICATE_SOP_INSTANCE,
        "conflict.dcm": Status.PROCESSING_FAILURE,
    }
    reasons = {Path(r["source"]).name: r["reason"] for r in rows}
    assert "SOP Instance UID" in reasons["other.dcm"]
    assert "PatientID" in reasons["conflict.dcm"]
    assert second.existing == 2
    assert second.refused == 2
    async with services.db.read() as conn:
        patients = (await conn.execute(select(Study.patient_id))).scalars().all()
    assert patients == ["P1"]
    assert await _count(services) == 1


async def test_dicomdir_media_and_the_audit(services: Services, tmp_path: Path) -> None:
    media = tmp_path / "cdrom"
    builder = FileSetBuilder()
    study = make_dataset()
    for number in range(1, 4):
        ds = make_dataset(
            StudyInstanceUID=study.StudyInstanceUID,
            SeriesInstanceUID=study.SeriesInstanceUID,
            InstanceNumber=number,
        )
        file_id = builder.add(
            ds, ds, Leaf(ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID, number)
        )
        path = media.joinpath(*file_id.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        if number < 3:
            ds.save_as(path, enforce_file_format=True)  # the third is missing from the media
    (media / "DICOMDIR").write_bytes(builder.encode())
    (media / "AUTORUN.INF").write_text("[autorun]")  # not referenced: not read

    progress, rows = await _import(services, [media / "DICOMDIR"], tmp_path)
    assert progress.stored == 2
    assert progress.media_directories == 1
    assert [r["reason"] for r in rows] == ["listed in the DICOMDIR but missing"]
    assert dcmread(media / "DICOMDIR").FileSetID == "LIGHTBOX"

    # the whole media walked: the DICOMDIR itself is no instance and no refusal
    walked, rows = await _import(services, [media], tmp_path / "walk")
    assert walked.media_directories == 1
    assert walked.existing == 2
    assert [Path(r["source"]).name for r in rows] == ["AUTORUN.INF"]

    await services.audit.flush()
    rows_found, total = await services.audit.search(
        AuditFilter(actor=ACTOR, action="store", study_uid=study.StudyInstanceUID),
        limit=10,
        offset=0,
    )
    assert total >= 2  # a write per ingest session, each run (identical re-sends count, as STOW)
    assert sum(r["count"] or 0 for r in rows_found) == 2 + 2
    assert all(r["source"] == "cli" for r in rows_found)


# --- _stepped: the blocking readers stepped in threads, several steps a trip ---


async def test_stepping_hands_on_every_item_in_order_then_the_error() -> None:
    def items() -> Iterator[int]:
        yield from range(5)
        raise OSError("unreadable")

    seen: list[int] = []

    async def consume() -> None:
        async for item in _stepped(items(), anyio.CapacityLimiter(1), batch=3):
            seen.append(item)

    with pytest.raises(OSError, match="unreadable"):
        await consume()
    assert seen == [0, 1, 2, 3, 4]


async def test_items_taken_but_not_handed_on_are_dropped_and_the_reader_closed() -> None:
    closed: list[bool] = []

    def items() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            closed.append(True)

    dropped: list[int] = []
    seen: list[int] = []

    async def consume() -> None:
        stepped = _stepped(items(), anyio.CapacityLimiter(1), batch=4, drop=dropped.append)
        async with aclosing(stepped):
            async for item in stepped:
                seen.append(item)
                if item == 1:
                    raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        await consume()
    assert seen == [0, 1]
    assert dropped == [2, 3]  # read in the same trip, never handed on
    assert closed == [True]  # the rest was never read

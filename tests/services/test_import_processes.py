"""A local import in several worker processes (``app.services.imports.processes``), on both index
databases: the parent's walk handed out, the workers' counters and refusals added up and written,
the journal shared, and a worker that dies failing the import with nothing lost or doubled by the
next run."""

import asyncio
import contextlib
import csv
import multiprocessing
import os
import signal
import zipfile
from pathlib import Path

import psutil
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from app.config import Settings
from app.index.imports import ImportJournal
from app.index.models import Instance
from app.services.container import Services
from app.services.imports import ImportOptions, ImportProgress, RefusalReport
from app.services.imports.processes import WorkerDied, WorkerSetup, run_in_processes
from tests.factories import make_instance

ACTOR = "cli:tester"
DESTINATION = "test"


async def _count(services: Services) -> int:
    async with services.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(Instance))).scalar_one())


def _setup(settings: Settings, journal: Path, *, chunk: int = 8) -> WorkerSetup:
    return WorkerSetup(settings, journal, DESTINATION, ACTOR, ImportOptions(jobs=2, chunk=chunk))


async def _run(
    setup: WorkerSetup, tree: Path, report_path: Path, progress: ImportProgress | None = None
) -> tuple[ImportProgress, list[dict[str, str]]]:
    report = RefusalReport(report_path)
    try:
        done = await run_in_processes(
            [tree],
            setup=setup,
            processes=2,
            report=report,
            progress=progress or ImportProgress(),
        )
    finally:
        report.close()
    with report_path.open(newline="") as rows:
        return done, list(csv.DictReader(rows))


def _import_workers() -> list[multiprocessing.process.BaseProcess]:
    """This process's import workers (other tests may leave a decoder process of their own)."""
    return [p for p in multiprocessing.active_children() if p.name.startswith("lightbox-import")]


async def test_a_tree_in_two_processes(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    study, other = generate_uid(), generate_uid()
    files = [make_instance(StudyInstanceUID=study, InstanceNumber=i) for i in range(60)]
    for i, raw in enumerate(files[:40]):
        (tree / "a" / f"IM{i:03d}").write_bytes(raw)
    with zipfile.ZipFile(tree / "some.zip", "w") as archive:
        for i, raw in enumerate(files[40:]):
            archive.writestr(f"dir/{i}.dcm", raw)
    (tree / "notes.txt").write_text("not an image")
    cut = make_instance(StudyInstanceUID=other, rows=64, columns=64)
    (tree / "pixels-cut.dcm").write_bytes(cut[: len(cut) - 1000])
    (tree / "gone.dcm").symlink_to(tmp_path / "nowhere.dcm")  # the walk's own refusal

    setup = _setup(settings, tmp_path / "journal.sqlite")
    progress, rows = await _run(setup, tree, tmp_path / "report.csv")
    assert progress.files == 43  # 40 files, the archive, the text, the cut file
    assert (progress.stored, progress.existing) == (60, 0)
    assert progress.archives == 1
    assert progress.not_dicom == 1
    assert progress.refused == 2  # the cut file (by ingest), the dangling link (by the walk)
    assert progress.read > 0
    reasons = {Path(row["source"]).name: (row["reason"], row["status"]) for row in rows}
    assert set(reasons) == {"notes.txt", "pixels-cut.dcm", "gone.dcm"}
    assert reasons["notes.txt"][0].startswith("not a DICOM file")
    assert reasons["pixels-cut.dcm"][1].startswith("0xC")  # ingest's status came through
    assert "link" in reasons["gone.dcm"][0]
    assert await _count(services) == 60
    journal = ImportJournal(tmp_path / "journal.sqlite", DESTINATION)
    try:
        assert journal.count() == 61  # 40 files, 20 members and the archive as a whole
    finally:
        journal.close()

    # run again: both workers read the journal, so everything stored is skipped unread
    again, rows = await _run(setup, tree, tmp_path / "again.csv")
    assert (again.stored, again.existing, again.skipped) == (0, 0, 41)
    assert again.refused == 2
    assert len(rows) == 3
    assert await _count(services) == 60


@pytest.mark.usefixtures("services")  # a migrated index
async def test_workers_run_with_two_malloc_arenas(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers start with MALLOC_ARENA_MAX=2 (less memory kept per thread); the command's
    own environment is left as it was, and a value the user set is kept."""
    tree = tmp_path / "tree"
    tree.mkdir()
    study = generate_uid()
    for i in range(20):
        (tree / f"{i}.dcm").write_bytes(make_instance(StudyInstanceUID=study, InstanceNumber=i))
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    seen: dict[int, str | None] = {}
    # processes this test process spawned before (another test's decoder pool): not workers
    earlier = {child.pid for child in psutil.Process().children()}

    async def watch() -> None:
        while True:
            for child in psutil.Process().children():
                with contextlib.suppress(psutil.Error):
                    if child.pid not in earlier and any(
                        "spawn_main" in part for part in child.cmdline()
                    ):
                        seen[child.pid] = child.environ().get("MALLOC_ARENA_MAX")
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        first = _setup(settings, tmp_path / "j1.sqlite")
        progress, _ = await _run(first, tree, tmp_path / "r1.csv")
    finally:
        watcher.cancel()
    assert progress.stored == 20
    assert len(seen) == 2
    assert set(seen.values()) == {"2"}
    assert "MALLOC_ARENA_MAX" not in os.environ

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")  # the user's choice stands
    seen.clear()
    watcher = asyncio.create_task(watch())
    try:
        await _run(_setup(settings, tmp_path / "j2.sqlite"), tree, tmp_path / "r2.csv")
    finally:
        watcher.cancel()
    assert set(seen.values()) == {"4"}
    assert os.environ["MALLOC_ARENA_MAX"] == "4"


async def test_a_worker_that_dies_fails_the_import_and_a_rerun_completes_it(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    study = generate_uid()
    count = 400
    for i in range(count):
        raw = make_instance(StudyInstanceUID=study, InstanceNumber=i, rows=32, columns=32)
        (tree / f"{i:04d}.dcm").write_bytes(raw)
    setup = _setup(settings, tmp_path / "journal.sqlite", chunk=4)
    progress = ImportProgress()
    running = asyncio.ensure_future(_run(setup, tree, tmp_path / "report.csv", progress))
    async with asyncio.timeout(120):
        while progress.stored == 0 and not running.done():  # noqa: ASYNC110 - counters, no event
            await asyncio.sleep(0.01)
    workers = _import_workers()
    assert len(workers) == 2, "the import finished before a worker could be killed"
    assert workers[0].pid is not None
    os.kill(workers[0].pid, signal.SIGKILL)
    with pytest.raises(WorkerDied, match="died"):
        await running
    assert not _import_workers(), "the other worker was left running"
    stored_first = await _count(services)
    assert 0 < stored_first < count

    again, rows = await _run(setup, tree, tmp_path / "again.csv")
    assert rows == []
    assert again.skipped > 0
    assert again.stored + again.existing + again.skipped == count
    assert await _count(services) == count
    report = await services.maintenance.fsck(verify_hashes=True)
    assert (list(report.missing_blobs), list(report.hash_mismatches)) == ([], [])

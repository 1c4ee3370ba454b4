"""``lightbox import PATH...``: folders, ZIP and tar archives and DICOMDIR media into this Lightbox
(through its ingest, no HTTP), or into a remote one (``--to URL --token``, STOW-RS), with a
progress bar, a summary, a report of what was refused, and a journal that makes a re-run skip
what is done (:mod:`app.services.imports`)."""

import asyncio
import hashlib
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.root import cli, os_actor
from app.config import Settings


@cli.command("import")
def import_(
    paths: Annotated[
        list[Path], typer.Argument(help="files, folders (recursive), ZIP/tar archives, DICOMDIRs")
    ],
    to: Annotated[
        str | None,
        typer.Option(help="a remote DICOMweb root (https://host/dicom-web): send by STOW-RS"),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="LIGHTBOX_IMPORT_TOKEN", help="bearer token for --to"),
    ] = None,
    journal: Annotated[
        Path | None,
        typer.Option(help="the journal of files done (default: data_dir/import-journal.sqlite)"),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="write refused files and reasons here (.csv, else JSON lines)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only count what would be imported")
    ] = False,
    jobs: Annotated[
        int, typer.Option(min=1, max=64, help="files read at once (in each process)")
    ] = 4,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="worker processes of a local import (default: one per core, at most 8)",
            show_default=False,
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(help="show a progress bar (default: on a terminal)"),
    ] = None,
) -> None:
    """Import DICOM files, read in place; exit status 1 when something was refused."""
    from app.index.imports import ImportJournal
    from app.services.imports import ImportAborted, ImportOptions, ImportProgress, RefusalReport
    from app.services.imports.processes import WorkerSetup, default_processes, run_in_processes

    settings = Settings()
    destination = to.rstrip("/") if to else _local_destination(settings)
    journal_path = journal or settings.data_dir / "import-journal.sqlite"
    show = sys.stderr.isatty() if progress is None else progress
    options = ImportOptions(jobs=jobs, dry_run=dry_run, estimate=show)
    counters = ImportProgress()
    opened_report = RefusalReport(report) if report is not None else None
    # opened here with worker processes too: the journal's file and table exist before they start
    opened_journal = ImportJournal(journal_path, destination)
    started = time.monotonic()
    workers = 1 if to is not None else processes or default_processes()
    try:
        if workers > 1:
            setup = WorkerSetup(settings, journal_path, destination, os_actor(), options)
            work = run_in_processes(
                paths, setup=setup, processes=workers, report=opened_report, progress=counters
            )
            asyncio.run(_with_progress(work, counters, show))
        else:
            asyncio.run(
                _run(
                    settings,
                    paths,
                    to,
                    token,
                    opened_journal,
                    opened_report,
                    counters,
                    options,
                    show,
                )
            )
    except KeyboardInterrupt:
        print("interrupted: what was stored is kept; run again to go on", file=sys.stderr)
        sys.exit(130)
    except ImportAborted as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        opened_journal.close()
        if opened_report is not None:
            opened_report.close()
    _summary(counters, time.monotonic() - started, dry_run, report)
    sys.exit(1 if counters.refused else 0)


def _local_destination(settings: Settings) -> str:
    """The journal's name for this Lightbox: its index and store (hashed: no password kept)."""
    where = f"{settings.resolved_database_url()}|{settings.resolved_storage_url()}"
    return "local:" + hashlib.sha256(where.encode("utf-8")).hexdigest()[:24]


async def _run(
    settings: Settings,
    paths: list[Path],
    to: str | None,
    token: str | None,
    journal: Any,
    report: Any,
    counters: Any,
    options: Any,
    show: bool,
) -> None:
    if to is not None:
        await _run_remote(settings, paths, to, token, journal, report, counters, options, show)
        return
    from app.services.container import open_services
    from app.services.imports.pipeline import ImportService

    actor = os_actor()
    async with open_services(settings) as services:
        imports: ImportService = services.imports

        def local(settle: Any) -> Any:
            return imports.local_sink(settle, actor=actor, chunk=options.chunk)

        await _with_progress(
            imports.run(
                paths,
                sink=local,
                journal=journal,
                report=report,
                progress=counters,
                options=options,
            ),
            counters,
            show,
        )


async def _run_remote(
    settings: Settings,
    paths: list[Path],
    to: str,
    token: str | None,
    journal: Any,
    report: Any,
    counters: Any,
    options: Any,
    show: bool,
) -> None:
    """Into a remote server: no local index or store is opened (only the journal)."""
    import shutil
    import tempfile

    from app.services.imports.pipeline import run_import
    from app.services.imports.remote import RemoteRefused, StowSink
    from app.services.spool import Spool

    spool_dir = Path(tempfile.mkdtemp(prefix="lightbox-import-"))
    max_bytes = settings.limits.max_instance_bytes

    def spool() -> Spool:
        return Spool(memory_limit=4 << 20, max_bytes=max_bytes, tmp_dir=spool_dir)

    def remote(settle: Any) -> StowSink:
        return StowSink(to, token, settle, concurrency=options.jobs)

    try:
        await _with_progress(
            run_import(
                paths,
                sink=remote,
                journal=journal,
                report=report,
                progress=counters,
                options=options,
                spool=spool,
                max_bytes=max_bytes,
            ),
            counters,
            show,
        )
    except RemoteRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)


async def _with_progress(work: Any, counters: Any, show: bool) -> None:
    """Run ``work``, showing a rich progress bar (files, instances, MB, rate, ETA) if asked."""
    if not show:
        await work
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task_id = bar.add_task("importing", total=None)
        job = asyncio.ensure_future(work)
        started = time.monotonic()
        while not job.done():
            await asyncio.wait([job], timeout=0.2)
            rate = counters.instances / max(time.monotonic() - started, 1e-3)
            files = f"{counters.files}" + (
                f"/{counters.total_files}" if counters.total_files is not None else ""
            )
            bar.update(
                task_id,
                completed=counters.read,
                total=counters.total_bytes,
                description=f"files {files}  instances {counters.instances} "
                f"({rate:.0f}/s)  refused {counters.refused}",
            )
        await job


def _summary(counters: Any, elapsed: float, dry_run: bool, report: Path | None) -> None:
    read_mb = counters.bytes_read / 1e6
    rate = counters.instances / elapsed if elapsed > 0 else 0.0
    lines = [f"files found: {counters.files} ({read_mb:.1f} MB read in {elapsed:.1f} s)"]
    if counters.archives:
        lines.append(f"archives read: {counters.archives}")
    if counters.media_directories:
        lines.append(f"DICOMDIR files: {counters.media_directories} (their files imported)")
    if dry_run:
        lines.append(f"instances that would be imported: {counters.candidates} (dry run)")
    else:
        lines.append(
            f"instances stored: {counters.stored}, already held: {counters.existing} "
            f"({rate:.0f} instances/s)"
        )
    lines.append(f"skipped (done in an earlier run): {counters.skipped}")
    lines.append(f"not DICOM: {counters.not_dicom}")
    lines.append(f"refused: {counters.refused}")
    if report is not None and (counters.refused or counters.not_dicom):
        lines.append(f"reasons in {report}")
    print("\n".join(lines))

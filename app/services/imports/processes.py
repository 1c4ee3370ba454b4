"""A local import in several worker processes (``lightbox import --processes N``).

Why: storing an instance is Python from end to end (sniff, spool, hash, parse, the index rows),
so one process uses one core, however many files it reads at once: 100,000 64 KB files import
at 694/s in one process, 1,141-1,177/s in two (2 cores; bench/results/2026-12-07-13).

How: the parent walks (:func:`~.sources.walk`, in a thread) and hands the files it finds out
in batches through one bounded queue, so memory stays a few batches whatever the size of the
tree, and the parent itself loads no more than the walk needs (~45 MB). Each worker process
opens its own index, object store and ingest (:func:`~app.services.ingest_stack.open_ingest`,
not every service) and the journal (SQLite in WAL mode, which several processes write), and
runs the one pipeline (:func:`~app.services.imports.pipeline.run_import`) on the files it is
handed. It sends its counters back a few times a second and each refusal as it is known; the
parent adds the counters up (the progress bar, the summary) and writes the refusals to the
report. What the walk itself finds wrong (a link that loops, a directory that cannot be read)
the parent counts and writes.

A worker that dies (killed, out of memory) fails the import: the others are stopped, what they
committed stays committed, and what no journal row lists is read again by the next run and stored
once (the index's duplicate check: an identical re-send writes nothing). The workers die with
their parent (``PR_SET_PDEATHSIG`` on Linux; elsewhere a worker stops when it finds its parent
gone), so a killed import leaves no process behind writing on its own.
"""

import asyncio
import contextlib
import ctypes
import fcntl
import multiprocessing
import os
import queue
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread

from app.config import Settings
from app.index.imports import ImportJournal
from app.services.imports.progress import ImportAborted, ImportOptions, ImportProgress
from app.services.imports.report import RefusalWriter
from app.services.imports.sources import FileFound, Found, MediaDirectory, count_totals, walk

__all__ = ["WorkerDied", "WorkerSetup", "default_processes", "run_in_processes"]

#: files per hand-out: one queue round trip (a pickle, a pipe write, a wake-up) per batch, not
#: per file; small enough that the last batches spread over the workers
BATCH: Final = 32
#: seconds between a worker's counter reports (the progress bar redraws every 0.2 s)
REPORT_EVERY: Final = 0.2
#: what a worker counts and reports; ``files`` and ``media_directories`` are the walk's
COUNTERS: Final = (
    "stored",
    "existing",
    "refused",
    "not_dicom",
    "skipped",
    "candidates",
    "archives",
)
#: glibc's malloc arenas in a worker (``MALLOC_ARENA_MAX``, unless set already): by default each
#: thread that allocates gets an arena of its own, up to 8 per core, and keeps what it freed;
#: with two, a worker's peak PSS on 20,000 files fell 114 -> 100 MB at the same rate
WORKER_ARENAS: Final = "2"
#: Linux prctl(2) option: the signal a process gets when its parent dies
_PR_SET_PDEATHSIG: Final = 1


def default_processes() -> int:
    """One worker per core (at most 8: the index takes the writes of all of them)."""
    return max(1, min(os.cpu_count() or 1, 8))


class WorkerDied(ImportAborted):
    """A worker process ended without finishing its share."""


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What a worker needs to open the services and the journal as its parent would."""

    settings: Settings
    journal: Path | None
    destination: str
    actor: str
    options: ImportOptions


async def run_in_processes(
    paths: Sequence[Path | str],
    *,
    setup: WorkerSetup,
    processes: int,
    report: RefusalWriter | None,
    progress: ImportProgress,
) -> ImportProgress:
    """Import ``paths`` in ``processes`` worker processes (module docstring); ``progress`` is
    kept up to date with their counters as they come, and returned."""
    context = multiprocessing.get_context("spawn")  # the parent runs threads: no fork
    handle, lock = tempfile.mkstemp(prefix="lightbox-import-", suffix=".lock")
    os.close(handle)
    files: Any = context.Queue(maxsize=processes * 4)
    events: Any = context.Queue()
    workers: list[BaseProcess] = [
        context.Process(
            target=_work,
            args=(setup, index, lock, files, events),
            name=f"lightbox-import-{index}",
            daemon=True,
        )
        for index in range(processes)
    ]
    with _environment(MALLOC_ARENA_MAX=WORKER_ARENAS):
        for worker in workers:
            worker.start()
    stop = threading.Event()
    walker = threading.Thread(
        target=_walk, args=(paths, files, events, processes, stop, progress), daemon=True
    )
    walker.start()
    counting = (
        asyncio.create_task(count_totals(paths, progress)) if setup.options.estimate else None
    )
    finished = False
    try:
        await _collect(events, workers, _Tally(progress, processes), report)
        finished = True
    finally:
        stop.set()
        if counting is not None:
            counting.cancel()
            await asyncio.gather(counting, return_exceptions=True)
        for worker in workers:
            if not finished and worker.exitcode is None:
                worker.terminate()
            # a worker that said it is done flushes its queue as it exits: waited for
            await anyio.to_thread.run_sync(worker.join, 30)
        await anyio.to_thread.run_sync(walker.join, 30)
        files.cancel_join_thread()  # batches nobody will take: not waited for at exit
        with contextlib.suppress(OSError):
            os.unlink(lock)
    return progress


class _Tally:
    """The import's counters: the walk's own, plus the latest report of each worker."""

    def __init__(self, progress: ImportProgress, processes: int) -> None:
        self.progress = progress
        self.walk_refused = 0
        self._reports: list[dict[str, int]] = [{} for _ in range(processes)]

    def update(self, index: int, counts: dict[str, int]) -> None:
        self._reports[index] = counts
        self._sum()

    def refuse(self) -> None:
        self.walk_refused += 1
        self._sum()

    def _sum(self) -> None:
        for name in COUNTERS:
            total = sum(report.get(name, 0) for report in self._reports)
            setattr(self.progress, name, total + (self.walk_refused if name == "refused" else 0))
        self.progress.bytes_read = sum(report.get("bytes_read", 0) for report in self._reports)


async def _collect(
    events: Any, workers: list[BaseProcess], tally: _Tally, report: RefusalWriter | None
) -> None:
    """Take the workers' events until each has finished; a worker gone first fails it."""
    finished: set[int] = set()
    while len(finished) < len(workers):
        try:
            event = await anyio.to_thread.run_sync(events.get, True, REPORT_EVERY)
        except queue.Empty:
            _check(workers, finished)
            continue
        kind = event[0]
        if kind == "counts":
            tally.update(event[1], event[2])
        elif kind == "refused":
            if report is not None:
                report.write(event[1], event[2], event[3])
        elif kind == "walk-refused":
            tally.refuse()
            if report is not None:
                report.write(event[1], event[2])
        elif kind == "done":
            tally.update(event[1], event[2])
            finished.add(event[1])
        elif kind == "failed":
            raise WorkerDied(f"import worker {event[1]} failed: {event[2]}")


def _check(workers: list[BaseProcess], finished: set[int]) -> None:
    for index, worker in enumerate(workers):
        if index not in finished and worker.exitcode is not None:
            raise WorkerDied(
                f"import worker {index} died (exit code {worker.exitcode}); what was stored "
                "is kept: run the import again to go on"
            )


def _walk(
    paths: Sequence[Path | str],
    files: Any,
    events: Any,
    processes: int,
    stop: threading.Event,
    progress: ImportProgress,
) -> None:
    """The parent's walk (a thread): files handed out in batches, then one end mark a worker."""

    def put(item: list[tuple[str, int, int]] | None) -> bool:
        while not stop.is_set():
            try:
                files.put(item, timeout=REPORT_EVERY)
                return True
            except queue.Full:
                continue
        return False

    batch: list[tuple[str, int, int]] = []
    try:
        for found in walk(paths):
            if stop.is_set():
                return
            if isinstance(found, FileFound):
                progress.files += 1
                batch.append((found.path, found.size, found.mtime_ns))
                if len(batch) >= BATCH:
                    if not put(batch):
                        return
                    batch = []
            elif isinstance(found, MediaDirectory):
                progress.media_directories += 1
            else:
                events.put(("walk-refused", found.name, found.reason))
        if batch and not put(batch):
            return
    finally:
        for _ in range(processes):
            if not put(None):
                break


@contextlib.contextmanager
def _environment(**defaults: str) -> Iterator[None]:
    """Set the variables not set already, for the processes started meanwhile (a spawned
    process inherits the environment as it is when it starts); restored on exit."""
    added = [name for name in defaults if name not in os.environ]
    for name in added:
        os.environ[name] = defaults[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


# -- in a worker process ---------------------------------------------------------------------


def _work(setup: WorkerSetup, index: int, lock: str, files: Any, events: Any) -> None:
    """A worker process's entry point."""
    _die_with_parent()
    try:
        _prepare(setup.settings, lock)
        settings = setup.settings.model_copy(update={"auto_migrate": False})
        asyncio.run(_import_share(replace(setup, settings=settings), index, files, events))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        sys.exit(130)
    except BaseException as exc:
        events.put(("failed", index, f"{type(exc).__name__}: {exc}"))
        sys.exit(1)


def _prepare(settings: Settings, lock: str) -> None:
    """Migrate the index if configured to (the embedded default), one worker at a time: the
    first does it, the others find it done (two migrating one index at once collide). The
    parent leaves it to them so that it never loads the index's code (module docstring)."""
    from app.services.ingest_stack import prepare_index

    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released as the file closes
        asyncio.run(prepare_index(settings))


async def _import_share(setup: WorkerSetup, index: int, files: Any, events: Any) -> None:
    # the worker's own index, store and ingest: only those, not every service (~20 MB less)
    from app.services.imports.pipeline import ImportService, Settle, Sink
    from app.services.ingest_stack import open_ingest

    progress = ImportProgress()
    journal = ImportJournal(setup.journal, setup.destination) if setup.journal is not None else None
    try:
        async with open_ingest(setup.settings) as stack:
            imports = ImportService(stack.ingest, stack.audit)
            options = setup.options

            def local(settle: Settle) -> Sink:
                return imports.local_sink(settle, actor=setup.actor, chunk=options.chunk)

            ticker = asyncio.create_task(_report_counts(progress, index, events))
            try:
                await imports.run(
                    (),
                    sink=local,
                    journal=journal,
                    report=_ToParent(events),
                    progress=progress,
                    options=options,
                    source=_handed(files),
                )
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
    finally:
        if journal is not None:
            journal.close()
    events.put(("done", index, _counts(progress)))


def _handed(files: Any) -> Iterator[Found]:
    """The files the parent hands this worker, until its end mark (or until the parent is
    gone, where the death signal is not available)."""
    parent = multiprocessing.parent_process()
    while True:
        try:
            batch = files.get(timeout=1.0)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return
            continue
        if batch is None:
            return
        for path, size, mtime_ns in batch:
            yield FileFound(path, size, mtime_ns)


async def _report_counts(progress: ImportProgress, index: int, events: Any) -> None:
    while True:
        await asyncio.sleep(REPORT_EVERY)
        events.put(("counts", index, _counts(progress)))


def _counts(progress: ImportProgress) -> dict[str, int]:
    counts = {name: int(getattr(progress, name)) for name in COUNTERS}
    counts["bytes_read"] = progress.read
    return counts


class _ToParent:
    """The refusal report as seen from a worker: each row goes to the parent, which writes it."""

    def __init__(self, events: Any) -> None:
        self._events = events

    def write(self, source: str, reason: str, status: int | None = None) -> None:
        self._events.put(("refused", source, reason, status))


def _die_with_parent() -> None:
    """Be killed when the parent dies (Linux), so that a killed import stops writing."""
    parent = multiprocessing.parent_process()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl: _handed watches the parent instead
            pass
    if parent is not None and parent.pid != os.getppid():  # it died before prctl took hold
        os._exit(1)

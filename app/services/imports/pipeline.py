"""The import pipeline (the package docstring): walk, read, ingest, settle."""

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Final, Protocol, TypeVar

import anyio
import anyio.to_thread

from app.dicom.instance import ParsedInstance
from app.index.imports import ImportJournal, JournalEntry
from app.services.audit import AuditLog, AuditRecord, Outcome, WriteAudit
from app.services.imports.progress import ImportAborted, ImportOptions, ImportProgress, Settled
from app.services.imports.reading import (
    ArchiveEnd,
    ArchiveState,
    Candidate,
    Item,
    Reader,
    Refused,
    Skipped,
)
from app.services.imports.report import RefusalReport, RefusalWriter
from app.services.imports.sources import FileFound, Found, MediaDirectory, count_totals, walk
from app.services.ingest import IngestService, IngestSession, InstanceOutcome
from app.services.spool import Spool, SpooledPart

__all__ = [
    "ImportAborted",
    "ImportOptions",
    "ImportProgress",
    "ImportService",
    "RefusalReport",
    "RefusalWriter",
    "Settle",
    "Settled",
    "Sink",
    "run_import",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


class Sink(Protocol):
    """Where instances go: the local ingest, or a remote server by STOW-RS."""

    async def add(self, candidate: Candidate) -> None:
        """Take one instance (waits while too many are in flight)."""

    async def close(self) -> None:
        """Wait for everything taken to be settled."""


#: what a sink calls when an instance's outcome is known
Settle = Callable[[Candidate, Settled], None]


class ImportService:
    """Runs imports (module docstring)."""

    def __init__(self, ingest: IngestService, audit: AuditLog) -> None:
        self._ingest = ingest
        self._audit = audit

    def local_sink(self, settle: Settle, *, actor: str, chunk: int) -> Sink:
        """Instances into this Lightbox's ingest."""
        return _IngestSink(self._ingest, self._audit, settle, actor=actor, chunk=chunk)

    def spool(self) -> Spool:
        return self._ingest.spool()

    @property
    def max_instance_bytes(self) -> int:
        return self._ingest.policy.max_instance_bytes

    async def run(
        self,
        paths: Sequence[Path | str],
        *,
        sink: Callable[[Settle], Sink] | None,
        journal: ImportJournal | None,
        report: RefusalWriter | None,
        progress: ImportProgress,
        options: ImportOptions,
        source: Iterator[Found] | None = None,
    ) -> ImportProgress:
        """Import ``paths`` (or ``source``) into ``sink`` (:func:`run_import`), spooled as
        ingest spools."""
        return await run_import(
            paths,
            sink=sink,
            journal=journal,
            report=report,
            progress=progress,
            options=options,
            spool=self.spool,
            max_bytes=self.max_instance_bytes,
            source=source,
            # unsynced: the local sink's bulk sessions sync each batch at once, and a remote
            # one stores what it sends elsewhere
            parse=functools.partial(self._ingest.parse_blocking, sync=False),
        )


async def run_import(
    paths: Sequence[Path | str],
    *,
    sink: Callable[[Settle], Sink] | None,
    journal: ImportJournal | None,
    report: RefusalWriter | None,
    progress: ImportProgress,
    options: ImportOptions,
    spool: Callable[[], Spool],
    max_bytes: int,
    source: Iterator[Found] | None = None,
    parse: Callable[[SpooledPart], ParsedInstance] | None = None,
) -> ImportProgress:
    """Import ``paths`` into ``sink`` (a factory given the settle callback; None in a dry run),
    each instance spooled by ``spool`` and at most ``max_bytes``; ``progress`` is updated as it
    goes and returned. A remote import runs this alone, without the local services. ``source``,
    when given, is read instead of walking ``paths``: a worker process's share of a walk made
    elsewhere (:mod:`.processes`). ``parse``, when given, parses each instance in the thread
    that read it (the local ingest's :meth:`~IngestService.parse_blocking`)."""
    run = _Run(
        Reader(spool, max_bytes=max_bytes, journal=journal, dry_run=options.dry_run, parse=parse),
        journal,
        report,
        progress,
    )
    progress._reader = run.reader
    target = sink(run.settle) if sink is not None and not options.dry_run else None
    counting: asyncio.Task[None] | None = None
    if options.estimate and source is None:
        counting = asyncio.create_task(count_totals(paths, progress))
    try:
        await run.go(walk(paths) if source is None else source, target, max(1, options.jobs))
    finally:
        if counting is not None:
            counting.cancel()
            await asyncio.gather(counting, return_exceptions=True)
        progress.bytes_read = run.reader.bytes_read.value
        progress._reader = None
    return progress


class _Run:
    """One import's state: the reader, the journal, the report and the counters."""

    def __init__(
        self,
        reader: Reader,
        journal: ImportJournal | None,
        report: RefusalWriter | None,
        progress: ImportProgress,
    ) -> None:
        self.reader = reader
        self.journal = journal
        self.report = report
        self.progress = progress
        self._done: list[JournalEntry] = []

    async def go(self, source: Iterator[Found], sink: Sink | None, jobs: int) -> None:
        found: asyncio.Queue[FileFound | None] = asyncio.Queue(maxsize=jobs * 2)
        limiter = anyio.CapacityLimiter(jobs + 1)

        async def walker() -> None:
            try:
                async with aclosing(_stepped(source, limiter, batch=WALK_BATCH)) as walked:
                    async for item in walked:
                        if isinstance(item, FileFound):
                            self.progress.files += 1
                            await found.put(item)
                        elif isinstance(item, MediaDirectory):
                            self.progress.media_directories += 1
                        else:
                            self.refuse(Refused(item.name, item.reason))
            finally:
                for _ in range(jobs):
                    await found.put(None)

        async def worker() -> None:
            while (file := await found.get()) is not None:
                try:
                    # closed (what it read and not handed on dropped) as soon as we stop
                    reader = self.reader.read(file)
                    read = _stepped(reader, limiter, batch=READ_BATCH, drop=_discard)
                    async with aclosing(read):
                        async for item in read:
                            await self.take(item, sink)
                except ImportAborted:
                    raise
                except Exception as exc:  # whatever a file holds, the import goes on
                    log.warning("import: %s while reading a file", type(exc).__name__)
                    self.refuse(Refused(file.path, f"could not be read: {type(exc).__name__}"))
                self.flush_journal()

        tasks = [asyncio.create_task(walker())] + [
            asyncio.create_task(worker()) for _ in range(jobs)
        ]
        try:
            await asyncio.gather(*tasks)
            if sink is not None:
                await sink.close()
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            self.flush_journal()

    async def take(self, item: Item, sink: Sink | None) -> None:
        if isinstance(item, Candidate):
            if sink is None:  # a dry run
                self.progress.candidates += 1
                return
            await sink.add(item)
        elif isinstance(item, Refused):
            self.refuse(item)
        elif isinstance(item, Skipped):
            self.progress.skipped += 1
        elif isinstance(item, ArchiveEnd):
            self.progress.archives += 1
            self._archive_settled(item.archive)

    def refuse(self, refused: Refused) -> None:
        if refused.final:
            self.progress.not_dicom += 1
        else:
            self.progress.refused += 1
        if self.report is not None:
            self.report.write(refused.name, refused.reason)
        state = refused.archive
        if state is not None:
            if not refused.final:
                state.ok = False
            if refused.name != state.key:  # a member's (not the archive's own) refusal
                state.settled += 1
                self._archive_settled(state)

    def settle(self, candidate: Candidate, settled: Settled) -> None:
        """A sink's outcome for one instance (called on the event loop)."""
        state = candidate.archive
        if settled.stored:
            if settled.existing:
                self.progress.existing += 1
            else:
                self.progress.stored += 1
            self._done.append((candidate.name, candidate.size, candidate.mtime_ns))
        else:
            self.progress.refused += 1
            if state is not None:
                state.ok = False
            if self.report is not None:
                self.report.write(candidate.name, settled.reason, settled.status)
        if state is not None:
            state.settled += 1
            self._archive_settled(state)
        if len(self._done) >= 256:
            self.flush_journal()

    def _archive_settled(self, state: ArchiveState) -> None:
        if state.complete:
            self._done.append((state.key, state.size, state.mtime_ns))
            state.ok = False  # recorded once

    def flush_journal(self) -> None:
        if self.journal is not None and self._done:
            done, self._done = self._done, []
            self.journal.record(done)


#: steps taken per trip to a worker thread: the walker's (cheap: a directory entry each) and a
#: reader's (a file, or an archive member spooled to disk: at most this many wait on the spool).
#: A trip is a hand-off to a thread and back, and with one a step a plain file cost three (its
#: instance, the end, the close): py-spy put 35 % of an import's GIL time in those hand-offs;
#: batched, 10,000 64 KB files import at 372-390/s against 334-349/s (two runs each, A/B/A/B).
WALK_BATCH: Final = 64
READ_BATCH: Final = 4


async def _stepped(
    items: Iterator[T],
    limiter: anyio.CapacityLimiter,
    *,
    batch: int = 1,
    drop: Callable[[T], None] | None = None,
) -> AsyncGenerator[T, None]:
    """A blocking iterator stepped in worker threads, up to ``batch`` steps a trip; closed (in a
    thread) only when left unfinished. What it raises comes after the items it gave before.
    Items taken but not handed on (the consumer stopped) go to ``drop``."""

    def pull() -> tuple[list[T], bool, Exception | None]:
        got: list[T] = []
        try:
            while len(got) < batch:
                got.append(next(items))
        except StopIteration:
            return got, True, None
        except Exception as exc:  # after the items already taken, as a plain iteration would
            return got, True, exc
        return got, False, None

    finished = False
    left: list[T] = []
    try:
        while not finished:
            got, finished, error = await anyio.to_thread.run_sync(pull, limiter=limiter)
            for index, item in enumerate(got):
                left = got[index + 1 :]
                yield item
            left = []
            if error is not None:
                raise error
    finally:
        if drop is not None:
            for item in left:
                drop(item)
        close = getattr(items, "close", None)
        if close is not None and not finished:
            await anyio.to_thread.run_sync(close, limiter=limiter)


def _discard(item: Item) -> None:
    """An item read but not taken: its spooled instance is removed."""
    if isinstance(item, Candidate) and item.part is not None:
        item.part.discard()


class _IngestSink:
    """Instances into the local ingest: one :class:`IngestSession` per ``chunk`` instances,
    at most two finishing at once, each audited as one write (its rows committed with it)."""

    def __init__(
        self,
        ingest: IngestService,
        audit: AuditLog,
        settle: Settle,
        *,
        actor: str,
        chunk: int,
    ) -> None:
        self._ingest = ingest
        self._audit = audit
        self._settle = settle
        self._actor = actor
        self._chunk = max(1, chunk)
        self._run_id = f"import-{uuid.uuid4().hex[:16]}"
        self._lock = asyncio.Lock()
        self._finishing: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(2)
        self._session, self._write, self._entries = self._new()

    def _new(self) -> tuple[IngestSession, WriteAudit, list[tuple[Candidate, InstanceOutcome]]]:
        write = self._audit.for_write(actor=self._actor, source="cli", request_id=self._run_id)
        session = self._ingest.session(audit=write, protocol="import", bulk=True)
        return session, write, []

    async def add(self, candidate: Candidate) -> None:
        assert candidate.part is not None
        # one at a time: an add waits for a parse slot while holding the lock, which is the
        # back-pressure the readers feel; the reading itself runs outside it
        async with self._lock:
            outcome = await self._session.add(candidate.part, candidate.parsed)
            candidate.parsed = None  # the session has it; the candidate waits for its outcome
            self._entries.append((candidate, outcome))
            if len(self._entries) >= self._chunk:
                await self._rotate()

    async def _rotate(self) -> None:
        session, write, entries = self._session, self._write, self._entries
        self._session, self._write, self._entries = self._new()
        if not entries:
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._finish(session, write, entries))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(
        self,
        session: IngestSession,
        write: WriteAudit,
        entries: list[tuple[Candidate, InstanceOutcome]],
    ) -> None:
        try:
            try:
                await session.finish()
            except BaseException:
                await session.abort()
                raise
            stored = refused = 0
            studies: set[str] = set()
            for candidate, outcome in entries:
                if outcome.stored:
                    stored += 1
                    if outcome.study_uid:
                        studies.add(outcome.study_uid)
                    self._settle(candidate, Settled(True, existing=outcome.existing))
                else:
                    refused += 1
                    status = int(outcome.failure) if outcome.failure is not None else None
                    self._settle(candidate, Settled(False, reason=outcome.message, status=status))
            await self._audit.record(
                AuditRecord(
                    action="store",
                    outcome=Outcome.SUCCESS if stored else Outcome.FAILURE,
                    actor=self._actor,
                    source="cli",
                    request_id=self._run_id,
                    study_uid=next(iter(studies)) if len(studies) == 1 else None,
                    count=stored,
                    detail=f"lightbox import: {stored} stored, {refused} refused",
                    supersedes=write.release(),
                )
            )
        finally:
            self._slots.release()

    async def close(self) -> None:
        async with self._lock:
            await self._rotate()
        while self._finishing:
            await asyncio.gather(*list(self._finishing))

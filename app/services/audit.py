"""The audit trail (GEN-10, DIMSE-14): who did what to which patient's images, and how it ended.

Every front end records through one :class:`AuditLog` (``services.audit.record(...)``): HTTP once
per request, DIMSE (later) once per association operation with the calling AE title as the actor.
``record`` only queues the event; one writer task commits queued events in batches. When the queue
is full, ``record`` waits (back-pressure): an event is never dropped silently. A batch that cannot
be written is retried until it is; if the log is closed while the database is down, the number of
events lost is logged as an error. One event the database refuses, while it takes others, cannot
hold the log (and, through back-pressure, every request) up for good: after a few failed attempts
the batch is narrowed down to it, and a failure row takes its place, the event itself going to the
error log (:meth:`AuditLog._narrowed`). With ``aggregate`` (the server's default), the reads of one
caller on one series that land in the same batch are written as one row that counts them
(:func:`aggregate`): a viewer paging through a series frame by frame leaves a row per batch,
not a row per frame.

Rows are append-only and hash-chained: ``hash = sha256(prev_hash || canonical content)``, with
``seq`` numbering the chain without gaps, so :meth:`AuditLog.verify` finds an edited, inserted or
removed row. Each batch takes the chain head under a lock (a PostgreSQL advisory lock across
processes; SQLite serialises writers), so concurrent writers keep one valid chain.

Writes: a row as durable as the write
-------------------------------------
A queued event dies with its process. For a read that is the price of cheap reads (below); for
a store or a delete it meant a write acknowledged, and kept, with no row saying who made it. So
a write's row is committed with the write:

1. Inside the index transaction that makes the write, the service adds the transaction's row to
   the *audit journal* (``audit_journal``, through the front end's :class:`WriteAudit`):
   unchained, one INSERT, no lock. A write is answered only after its commit (DESIGN.md §4), so
   an acknowledged write has its row, by construction; so does one that committed but was never
   answered (a crash in between).
2. The front end's own row for the request (HTTP: the middleware's, after the response) is
   queued as any other, naming the journal rows of the request (``AuditRecord.supersedes``).
   The writer deletes them in the transaction that appends that row to the chain: after a
   success the request's row says all they say (count, UIDs) and its status besides, so it
   stands for them; after a failure (the client went away once a batch had committed, an error
   after a commit) they are chained as rows of their own just before it. At every moment a
   committed write has its row in the journal or in the chain.
3. Journal rows whose request row never comes (the process died) are chained as they are, with
   no status (no answer was recorded): by the next server start (:meth:`AuditLog.recover`, rows
   older than the start), and by any writer once older than ``journal_grace`` (a replica that
   never comes back). A row is chained by the writer whose DELETE removed it, under the chain's
   lock, so never twice. This process's rows whose request is still running are never swept by
   age; another process's may be, when its request runs longer than the grace, or when a server
   starts while another replica is in the middle of a request: that request then leaves two rows
   (its journal row and its own), never none. A row chained late keeps the time of its commit,
   a little out of order in the chain (``seq`` orders the chain, not ``time``).

Why not straight into the chain in the write's transaction: each row hashes the one before, so
appending holds the chain head's lock until the commit. Held across the write's commit, it
serialises every ingest and delete commit with each other and with the batch writer, and each
commit's WAL flush waits for the previous one instead of sharing it (group commit). Measured on
PostgreSQL, 8 concurrent writers each committing a row and an audit row: 834 commits/s with the
unchained journal row, 167 with the chain lock taken in the transaction (the machine loaded by
other work; the ratio is the point). The journal costs a write transaction one INSERT and keeps
concurrent STOW commits independent.

What stays batched, and may be lost with the process in the linger before its batch commits:
reads (searches, retrieves, metadata, frames, renders), refused and failed requests that
committed nothing (401, 403, 4xx, 5xx), audit queries, capabilities. None changed anything a
crash could leave behind unexplained, and a row committed per read (a WAL flush per request) is
what the batching exists to avoid. A journal row is not covered by the hash chain until it is
chained (like a queued event, but durable): :meth:`AuditLog.verify` counts the rows waiting
(``pending``) apart from the chain's problems, and PostgreSQL refuses UPDATE on the journal.
"""

import asyncio
import contextlib
import hashlib
import logging
import operator
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from sqlalchemy import Select, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.dicom.text import storable
from app.index import audit_journal
from app.index.db import Database
from app.index.models import (
    AUDIT_KEY_CHARS,
    AUDIT_KEY_COLUMNS,
    AUDIT_KEY_TAGS,
    AUDIT_KEYS,
    AuditEvent,
    Study,
)

__all__ = [
    "AGGREGATED_ACTIONS",
    "GENESIS",
    "AuditFilter",
    "AuditLog",
    "AuditRecord",
    "ChainReport",
    "Outcome",
    "WriteAudit",
    "aggregate",
]

log = logging.getLogger(__name__)

GENESIS: Final = "0" * 64
#: how long the writer keeps its PostgreSQL connection while no event comes
_HOLD_SECONDS: Final = 1.0
#: the pauses between failed attempts at a batch: 0.05 s, doubling up to 5 s (the last repeats)
_RETRY_DELAYS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0)
#: failed attempts at a batch after which, if the database answers, it is searched for an event
#: the database refuses (:meth:`AuditLog._narrowed`)
_NARROW_AFTER: Final = 3
#: pg_advisory_xact_lock key serialising chain appends across processes ("LBAUDIT")
_CHAIN_LOCK: Final = 0x4C4241554449540


class Outcome:
    """``outcome`` values (mapped to DICOM EventOutcomeIndicator on export)."""

    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"


@dataclass(slots=True)
class AuditRecord:
    """One audited transaction, as a front end reports it.

    Not a frozen dataclass: one is made per request, and a frozen one's ``__init__`` (a
    ``object.__setattr__`` per field) cost three times as much. Nothing changes a record once it
    is queued.
    """

    action: str
    outcome: str
    status: int | None = None
    actor: str | None = None
    client_id: str | None = None
    source: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    instance_uid: str | None = None
    patient_id: str | None = None
    count: int | None = None
    request_id: str | None = None
    detail: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: the requests this record stands for when :func:`aggregate` merged several (else None)
    requests: int | None = None
    #: the journal rows of the write this record reports (:class:`WriteAudit`): deleted in the
    #: transaction that chains it (not content: never hashed)
    supersedes: tuple[int, ...] = ()
    #: the journal row this record was read from: chained only by the writer that deletes it
    journal_id: int | None = None


class WriteAudit:
    """The audit side of one write request (a STOW, a DELETE; a C-STORE association later):
    who writes, and the journal rows its transactions committed.

    A front end makes one with :meth:`AuditLog.for_write` and hands it to the service, which
    calls :meth:`journal` inside each transaction that writes; the front end's own row for the
    request then names the journal rows (``AuditRecord(supersedes=write.release())``), which it
    stands for (see the module's docstring).
    """

    __slots__ = ("_open", "actor", "client_id", "journaled", "request_id", "source")

    def __init__(
        self,
        open_rows: set[int],
        *,
        actor: str | None = None,
        client_id: str | None = None,
        source: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.actor = actor
        self.client_id = client_id
        self.source = source
        self.request_id = request_id
        #: the journal rows added so far (one of a transaction rolled back names no row: claiming
        #: it finds nothing)
        self.journaled: list[int] = []
        #: the log's journal rows whose request is still running (never swept by age)
        self._open = open_rows

    async def journal(self, conn: AsyncConnection, event: AuditRecord) -> None:
        """Add ``event`` (the write's action, count, UIDs) to the journal, in the transaction
        of ``conn``, the write's own: it commits, or not, with the write."""
        values = {name: getattr(event, name) for name in audit_journal.FIELDS}
        values.update(
            actor=self.actor,
            client_id=self.client_id,
            source=self.source,
            request_id=self.request_id,
        )
        # PostgreSQL text holds no NUL (nor UTF-8 a surrogate): such a value must not fail the
        # write it rides with
        row_id = await audit_journal.add(
            conn, {name: _storable(value) for name, value in values.items()}
        )
        self.journaled.append(row_id)
        self._open.add(row_id)

    def release(self) -> tuple[int, ...]:
        """The journal rows for the request's own row to stand for; from now on they may be
        chained on their own (by a sweep) should that row never be written."""
        self._open.difference_update(self.journaled)
        return tuple(self.journaled)


@dataclass(frozen=True, slots=True)
class _Sweep:
    """Queued to make the writer chain the journal rows written before ``cutoff`` that no
    request row will stand for (:meth:`AuditLog.recover`)."""

    cutoff: datetime


#: what the queue holds: an event, or a function the writer calls to build it
#: (:meth:`AuditLog.record_later`)
Pending = AuditRecord | Callable[[], AuditRecord] | _Sweep


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The admin query's filters (all optional, combined with AND)."""

    patient_id: str | None = None
    study_uid: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(slots=True)
class ChainReport:
    """What :meth:`AuditLog.verify` found."""

    rows: int = 0
    problems: list[str] = field(default_factory=list)
    #: events committed with their writes (the audit journal) and not chained yet: no problem,
    #: the server chains them (after a crash, when it starts again)
    pending: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


_CONTENT_FIELDS: Final = (
    "time",
    "actor",
    "client_id",
    "source",
    "action",
    "outcome",
    "status",
    "study_uid",
    "series_uid",
    "instance_uid",
    "patient_id",
    "count",
    "request_id",
    "detail",
)


#: hashed only when set (rows written before it existed hold NULL, and their hashes stay valid)
_REQUESTS: Final = "requests"
#: the columns a written row fills (the keys of :func:`_chain`'s rows)
_COLUMNS: Final = (*_CONTENT_FIELDS, _REQUESTS, "seq", "prev_hash", "hash")
#: simple-query protocol: several statements, one round trip (the lock key is a constant).
#: The head query below is a prepared statement for which PostgreSQL's default plan choice
#: (``auto``) kept making a custom plan per execution, 120 us of server CPU each time, more than
#: running it; the generic plan (index probes on ``study_uid`` and ``seq``) is as good for any
#: array of UIDs. SET LOCAL ends with the transaction.
_PG_BEGIN_AND_LOCK: Final = (
    "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; "
    f"SELECT pg_advisory_xact_lock({_CHAIN_LOCK})"
)
_PG_HEAD_AND_PATIENTS: Final = (
    "SELECT head.seq, head.hash, (SELECT json_object_agg(study_uid, patient_id)::text "
    "FROM study WHERE study_uid = ANY($1::text[])) "
    "FROM (SELECT 1) AS one LEFT JOIN "
    "(SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1) AS head ON true"
)
#: a written row's values in :data:`_COLUMNS` order (:func:`_chain`'s rows, COPY's records)
_values_of: Final = operator.itemgetter(*_COLUMNS)
_SEQ_AT: Final = _COLUMNS.index("seq")
_HASH_AT: Final = _COLUMNS.index("hash")


def _named(row: Sequence[Any]) -> dict[str, Any]:
    """A row of :func:`_chain` (values in :data:`_COLUMNS` order) by column name."""
    return dict(zip(_COLUMNS, row, strict=True))


async def _pg_append_and_commit(driver: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append ``rows`` with a binary COPY, then commit the batch's transaction.

    COPY costs the server half the CPU per row of an INSERT (no SQL text to parse, no values to
    convert from text), and the values travel as typed binary fields, so no row content is ever
    part of a statement's text.
    """
    await driver.copy_records_to_table("audit_event", records=rows, columns=_COLUMNS)
    await driver.execute("COMMIT")


async def _abandon(conn: AsyncConnection, driver: Any) -> None:
    """After a failed write: roll back, or drop the connection rather than pool it half-done."""
    try:
        if not driver.is_closed() and driver.is_in_transaction():
            with contextlib.suppress(Exception):
                await driver.execute("ROLLBACK")
    finally:
        if driver.is_closed() or driver.is_in_transaction():
            with contextlib.suppress(Exception):
                await conn.invalidate()


def _utc(value: datetime) -> datetime:
    """Aware UTC (SQLite hands back naive datetimes of what was stored as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stamp(value: datetime) -> str:
    """The hashed form of a row's time: ``%Y-%m-%dT%H:%M:%S.%fZ`` in UTC.

    >>> _stamp(datetime(2026, 12, 4, 18, 30, 5, tzinfo=UTC))
    '2026-12-04T18:30:05.000000Z'
    """
    value = _utc(value)
    if value.year < 1000:  # strftime does not pad the year to four digits everywhere
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # the same text as that strftime, at a tenth of its cost (isoformat: twice this)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - the fastest spelling
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def row_hash(prev_hash: str, seq: int, content: dict[str, Any]) -> str:
    """The chain hash of one row: SHA-256 over the previous hash, ``seq`` and the content."""
    canonical = dict(content)
    canonical["time"] = _stamp(canonical["time"])
    canonical["seq"] = seq
    payload = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + b"\n" + payload).hexdigest()


def _content(row: Any) -> dict[str, Any]:
    """A stored row's hashed content: the content fields, and ``requests`` when it is set."""
    content = {name: getattr(row, name) for name in _CONTENT_FIELDS}
    requests = getattr(row, _REQUESTS, None)
    if requests is not None:
        content[_REQUESTS] = requests
    return content


def as_json(row: Any) -> dict[str, Any]:
    """A stored row as a JSON-ready dict (API, export); ``requests`` is 1 for a row of its own."""
    out = _content(row)
    out.setdefault(_REQUESTS, 1)
    out["time"] = _utc(out["time"]).isoformat().replace("+00:00", "Z")
    out["seq"] = row.seq
    out["hash"] = row.hash
    out["prev_hash"] = row.prev_hash
    return out


class AuditLog:
    """Queues audit records and writes them in hash-chained batches."""

    def __init__(
        self,
        db: Database,
        *,
        queue_size: int = 10000,
        batch_size: int = 256,
        linger: float = 0.1,
        aggregate: bool = False,
        journal_grace: float = 300.0,
    ) -> None:
        self._db = db
        #: journal rows older than this (seconds) are chained on their own by a sweep, unless
        #: their request is still running in this process (see the module's docstring)
        self._grace = max(0.0, journal_grace)
        #: this process's journal rows whose request row is still to come (:class:`WriteAudit`)
        self._open: set[int] = set()
        #: the cutoff of a sweep to make (set by :meth:`recover`, or by age), else None
        self._sweep_due: datetime | None = None
        #: when (event loop time) the writer next sweeps by age; set when it starts
        self._next_sweep = 0.0
        #: merge a batch's reads of one caller on one series (:func:`aggregate`)
        self._aggregate = aggregate
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=max(1, queue_size))
        self._batch_size = max(1, batch_size)
        #: how long the writer waits for more events before committing a batch: one transaction
        #: (lock, chain head, PatientID look-up, insert) then serves many requests
        self._linger = max(0.0, linger)
        #: queued events that end the linger early: the rest of a batch, or a full queue
        self._wake_at = max(1, min(self._batch_size - 1, self._queue.maxsize))
        self._full = asyncio.Event()
        #: callers waiting in :meth:`flush` (or :meth:`close`): the writer does not linger for them
        self._flushes = 0
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        #: PostgreSQL: the writer's connection, kept from one batch to the next while events keep
        #: coming (a pool check-out and return cost as much CPU as the rest of a small batch)
        self._held: AsyncConnection | None = None

    def for_write(
        self,
        *,
        actor: str | None = None,
        client_id: str | None = None,
        source: str | None = None,
        request_id: str | None = None,
    ) -> WriteAudit:
        """The audit side of one write request: its services commit their rows with the write
        (:meth:`WriteAudit.journal`)."""
        return WriteAudit(
            self._open, actor=actor, client_id=client_id, source=source, request_id=request_id
        )

    async def recover(self) -> None:
        """Have the writer chain the journal rows written before now that no request row will
        stand for: those a previous run of the server left when it died between a write's
        commit and its request's row. Returns at once (the database may be down)."""
        await self.record_later(_Sweep(datetime.now(UTC)))
        self._full.set()  # no linger for it

    async def record(self, event: AuditRecord | None = None, /, **fields: Any) -> None:
        """Queue one event (``record(AuditRecord(...))`` or ``record(action=..., outcome=...)``).

        Waits while the queue is full, so a slow database slows callers down instead of losing
        events.
        """
        await self.record_later(event if event is not None else AuditRecord(**fields))

    async def record_later(self, event: Pending) -> None:
        """Queue an event, or a function that builds it: the writer calls it with the rest of its
        batch, off the request path.

        The HTTP front end records this way: the work of turning a request into an event then
        runs in the writer's loop over a batch, where its code stays in the CPU's caches, rather
        than once per request between two responses that flushed them. The function must only
        read what it captured (it runs up to a linger later), and must not fail; if it does, a
        row saying so is written in its place.
        """
        if self._closing:
            raise RuntimeError("the audit log is closed")
        self._ensure_writer()
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            await self._queue.put(event)
        if self._queue.qsize() >= self._wake_at:
            self._full.set()  # a full batch (or a full queue) is waiting: no need to linger

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    async def flush(self) -> None:
        """Wait until every event queued so far is committed (the writer stops lingering)."""
        if self._writer is None:
            return
        await self._joined()

    async def _joined(self) -> None:
        """Wait for the queue to be written, ending the writer's linger meanwhile."""
        self._flushes += 1
        self._full.set()
        try:
            await self._queue.join()
        finally:
            self._flushes -= 1

    async def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._writer is None:
            self._closing = True
            return
        try:
            async with asyncio.timeout(30):
                await self._joined()
        except TimeoutError:
            log.error("audit log closed with %d events not written", self._queue.qsize())
        self._closing = True
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    async def _run(self) -> None:
        self._held = None  # a connection is never carried over from another writer (or loop)
        loop = asyncio.get_running_loop()
        self._next_sweep = loop.time() + self._grace
        try:
            while True:
                batch = await self._next_batch()
                events = await _built_in_slices(batch)
                if self._aggregate:  # once per batch, not again on each retry of its write
                    events = aggregate(events)
                for item in batch:
                    if isinstance(item, _Sweep) and (
                        self._sweep_due is None or item.cutoff > self._sweep_due
                    ):
                        self._sweep_due = item.cutoff
                if self._sweep_due is None and loop.time() >= self._next_sweep:
                    self._sweep_due = datetime.now(UTC) - timedelta(seconds=self._grace)
                    self._next_sweep = loop.time() + self._grace
                events = await self._with_journal(events)
                if events:
                    await self._store(events)
                for _ in batch:
                    self._queue.task_done()
        finally:
            await self._release()

    async def _with_journal(self, events: list[AuditRecord]) -> list[AuditRecord]:
        """``events`` with the journal rows to chain as rows of their own: those of a write
        request that failed, just before its row, and those a sweep finds (first: they are the
        oldest). A journal that cannot be read now is read at a later batch; meanwhile its rows
        stay in it, claimed by no row."""
        failed = [e for e in events if e.supersedes and e.outcome != Outcome.SUCCESS]
        due = self._sweep_due
        if not failed and due is None:
            return events
        # rows of requests still running here, or stood for by this batch, are no orphans: a
        # sweep fetches beyond its page by their number, then leaves them out
        skip = self._open.union(*(e.supersedes for e in events))
        limit = self._batch_size + len(skip)
        found: list[dict[str, Any]] = []
        try:
            async with self._db.read() as conn:
                owned = await audit_journal.rows(conn, [i for e in failed for i in e.supersedes])
                if due is not None:
                    found = await audit_journal.older_than(conn, due, limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("audit journal not read (%s); its rows wait for a later batch", exc)
            for event in failed:
                event.supersedes = ()  # not claimed: they stay in the journal for a sweep
            return events
        if due is not None:
            if len(found) < limit:
                self._sweep_due = None
            else:  # more to come: another batch, at once, whether or not events arrive
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait(_Sweep(due))
        by_id = {row["id"]: _journaled(row) for row in owned}
        out = [_journaled(row) for row in found if row["id"] not in skip]
        expand = {id(e) for e in failed}
        for event in events:
            if id(event) in expand:
                out += [by_id[i] for i in event.supersedes if i in by_id]
                event.supersedes = ()  # each of them claims its own row
            out.append(event)
        return out

    async def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):  # a dead connection is discarded by the pool
                await held.close()

    async def _next_batch(self) -> list[Pending]:
        """The next events to write: the first one, then whatever arrives within the linger.

        The writer sleeps through the linger once (woken early when a full batch is waiting)
        rather than waiting for each event on its own: a timed wait per event cost more CPU
        than writing the event.
        """
        if self._held is None:
            batch = [await self._queue.get()]
        else:
            try:
                # a cancelled Queue.get leaves the item in the queue: nothing is lost
                batch = [await asyncio.wait_for(self._queue.get(), _HOLD_SECONDS)]
            except TimeoutError:  # quiet: give the connection back to the pool meanwhile
                await self._release()
                batch = [await self._queue.get()]
        lingering = (
            len(batch) < self._batch_size
            and not (self._closing or self._flushes)
            and self._linger > 0
            and not isinstance(batch[0], _Sweep)
        )
        if lingering and self._queue.qsize() < self._wake_at:
            self._full.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._linger)
        while len(batch) < self._batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _store(self, events: list[AuditRecord]) -> None:
        """Write ``events``, trying again until they are written: never dropped.

        A database that is down, busy or full is waited for, however long. After
        :data:`_NARROW_AFTER` failed attempts, if the database answers, the batch is written in
        ever smaller pieces instead, so that an event it refuses on its own is found and replaced
        (:meth:`_narrowed`); what cannot be written even so is tried again, whole, later.
        """
        failures = 0
        while True:
            try:
                if failures >= _NARROW_AFTER and await self._answers():
                    events = await self._narrowed(events)
                    if not events:
                        return
                    raise RuntimeError("the database takes no audit row just now")
                await self._write(events)
                return
            except asyncio.CancelledError:
                log.error("audit writer stopped with %d events not written", len(events))
                raise
            except Exception as exc:  # the database is down, busy or full: retry, never drop
                delay = _RETRY_DELAYS[min(failures, len(_RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("audit write failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _answers(self) -> bool:
        """Whether the database answers a query (so a failing batch is not its outage)."""
        try:
            await self._db.check()
        except asyncio.CancelledError:
            raise
        except Exception:
            return False
        return True

    async def _narrowed(self, events: Sequence[AuditRecord]) -> list[AuditRecord]:
        """Write ``events`` whole, else by halves, quarters, ... down to single events; an event
        the database refuses on its own, twice, is replaced by a failure row
        (:func:`_stand_in`) and logged whole as an error.

        Returns the events still not written, in order: those from the first one for which not
        even its stand-in could be written (then the database takes no row at all, and nothing
        is replaced). The chain keeps the events' order, each piece being appended in turn.
        """
        try:
            await self._write(events)
            return []
        except asyncio.CancelledError:
            raise
        except Exception:
            if len(events) > 1:
                half = len(events) // 2
                rest = await self._narrowed(events[:half])
                if rest:
                    return [*rest, *events[half:]]
                return await self._narrowed(events[half:])
        (event,) = events
        try:  # once more on its own: a passing failure is no refusal
            await self._write(events)
            return []
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            refused = exc
        try:
            await self._write([_stand_in(event, refused)])
        except asyncio.CancelledError:
            raise
        except Exception:
            return list(events)
        log.error(
            "audit event could not be stored (%s: %s); a failure row stands in its place: %r",
            type(refused).__name__,
            refused,
            event,
        )
        return []

    async def _write(self, batch: Sequence[AuditRecord]) -> None:
        """Append ``batch`` to the chain in one transaction, PatientIDs filled in from the index."""
        if self._db.is_sqlite:
            await self._write_sqlite(batch)
        else:
            await self._write_postgresql(batch)

    async def _write_postgresql(self, batch: Sequence[AuditRecord]) -> None:
        """Four round trips on the driver's connection: begin + lock, head + PatientIDs, COPY of
        the rows, commit (and, for a batch holding a write's row, a fifth: the journal rows it
        claims).

        Through SQLAlchemy the same work took six round trips and about 1 ms of CPU per batch,
        more than hashing and encoding a full batch; the statements are fixed, so they go
        straight to asyncpg.
        """
        wanted = sorted(
            {
                e.study_uid
                for e in batch
                if e.study_uid and e.patient_id is None and "\x00" not in e.study_uid
            }
        )
        if self._held is None:
            self._held = await self._db.engine.connect()
        conn = self._held
        driver: Any = (await conn.get_raw_connection()).driver_connection
        if driver.is_closed():  # the server closed it while it was kept: take another
            self._held = None
            with contextlib.suppress(Exception):
                await conn.invalidate()
                await conn.close()
            conn = self._held = await self._db.engine.connect()
            driver = (await conn.get_raw_connection()).driver_connection
        claims = _claims(batch)
        try:
            await driver.execute(_PG_BEGIN_AND_LOCK)
            if claims:  # after the lock: what another writer claimed is gone
                batch = _claimed(batch, await audit_journal.claim_driver(driver, claims))
            # a new snapshot, taken after the lock: the head no other writer can move now
            seq, prev, found = await driver.fetchrow(_PG_HEAD_AND_PATIENTS, wanted)
            if seq is None:
                seq, prev = 0, GENESIS
            rows = await _chain_in_slices(batch, orjson.loads(found or "{}"), seq, prev)
            if rows:
                await _pg_append_and_commit(driver, rows)
            else:  # every journal row of the batch was another writer's to chain
                await driver.execute("COMMIT")
        except BaseException:
            self._held = None
            try:
                await _abandon(conn, driver)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()
            raise

    async def _write_sqlite(self, batch: Sequence[AuditRecord]) -> None:
        claims = _claims(batch)
        async with self._db.write() as conn:
            if claims:
                batch = _claimed(batch, await audit_journal.claim(conn, claims))
                if not batch:
                    return
            found = await _patient_ids(conn, batch)
            head = (
                await conn.execute(
                    select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
                )
            ).first()
            seq, prev = (head.seq, head.hash) if head is not None else (0, GENESIS)
            rows = await _chain_in_slices(batch, found, seq, prev)
            await conn.execute(insert(AuditEvent), [_named(row) for row in rows])

    # --- reading -----------------------------------------------------------------------------

    async def search(
        self, filters: AuditFilter, *, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of events matching ``filters`` (newest first) and the number matching."""
        postgresql = not self._db.is_sqlite
        query = _filtered(select(AuditEvent), filters, postgresql=postgresql)
        count = _filtered(
            select(func.count()).select_from(AuditEvent), filters, postgresql=postgresql
        )
        async with self._db.read() as conn:
            total = (await conn.execute(count)).scalar_one()
            rows = (
                await conn.execute(
                    query.order_by(AuditEvent.seq.desc()).limit(limit).offset(offset)
                )
            ).all()
        return [as_json(r) for r in rows], total

    async def rows(self, filters: AuditFilter | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every event in chain order (export), read in chunks."""
        last = 0
        while True:
            query = select(AuditEvent).where(AuditEvent.seq > last)
            if filters is not None:
                query = _filtered(query, filters, postgresql=not self._db.is_sqlite)
            async with self._db.read() as conn:
                chunk = (await conn.execute(query.order_by(AuditEvent.seq).limit(1000))).all()
            if not chunk:
                return
            for row in chunk:
                yield as_json(row)
            last = chunk[-1].seq

    async def verify(self) -> ChainReport:
        """Walk the chain: every row's hash recomputed, every link and ``seq`` checked; the
        journal rows waiting to be chained are counted (``pending``), not problems."""
        report = ChainReport()
        async with self._db.read() as conn:
            report.pending = await audit_journal.pending(conn)
        prev, expected_seq, last = GENESIS, 1, None
        while True:
            query = select(AuditEvent).order_by(AuditEvent.seq).limit(1000)
            if last is not None:
                query = query.where(AuditEvent.seq > last)
            async with self._db.read() as conn:
                chunk = (await conn.execute(query)).all()
            if not chunk:
                return report
            for row in chunk:
                report.rows += 1
                if row.seq != expected_seq:
                    report.problems.append(
                        f"seq {expected_seq}..{row.seq - 1} missing (rows removed)"
                        if row.seq > expected_seq
                        else f"seq {row.seq} out of order"
                    )
                if row.prev_hash != prev:
                    report.problems.append(f"seq {row.seq}: link to the previous row broken")
                if row_hash(row.prev_hash, row.seq, _content(row)) != row.hash:
                    report.problems.append(f"seq {row.seq}: content changed after writing")
                prev, expected_seq = row.hash, row.seq + 1
            last = chunk[-1].seq


async def _built_in_slices(batch: Sequence[Pending]) -> list[AuditRecord]:
    """:func:`_built`, a slice at a time, returning to the event loop in between (as
    :func:`_chain_in_slices` does): a whole batch built at once held the requests up."""
    events: list[AuditRecord] = []
    for start in range(0, len(batch), _SLICE):
        if start:
            await asyncio.sleep(0)
        events += _built(batch[start : start + _SLICE])
    return events


#: an action or request id a stand-in row keeps (what the front ends make, nothing more)
_PLAIN: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_ACTION_CHARS: Final = 32


def _stand_in(event: AuditRecord, refused: BaseException) -> AuditRecord:
    """The row written in place of ``event``, which the database refused on its own: its time,
    and its action and request id when they are plain names, with the refusal; the event's
    content, some part of which could not be stored, goes to the error log instead."""
    action, request_id = event.action, event.request_id
    return AuditRecord(
        action=action if len(action) <= _ACTION_CHARS and _PLAIN.fullmatch(action) else "unknown",
        outcome=Outcome.FAILURE,
        request_id=request_id
        if isinstance(request_id, str) and _PLAIN.fullmatch(request_id)
        else None,
        detail=f"audit event could not be stored: {type(refused).__name__}; it is in the "
        "server's error log",
        time=event.time,
        # a journal row it replaces is claimed (or a sweep would find it, and fail, forever);
        # the journal rows a request's row stood for are not: a sweep chains them on their own
        journal_id=event.journal_id,
    )


def _claims(batch: Sequence[AuditRecord]) -> list[int]:
    """The journal rows the transaction chaining ``batch`` deletes."""
    return [i for e in batch for i in (*e.supersedes, e.journal_id) if i is not None]


def _claimed(batch: Sequence[AuditRecord], taken: set[int]) -> list[AuditRecord]:
    """``batch`` without the journal rows this transaction did not delete: another writer
    chained them (a request's own row is chained whatever it stands for)."""
    return [e for e in batch if e.journal_id is None or e.journal_id in taken]


def _journaled(row: dict[str, Any]) -> AuditRecord:
    """A journal row as the event to chain in its place (it claims the row)."""
    return AuditRecord(**{name: row[name] for name in audit_journal.FIELDS}, journal_id=row["id"])


def _built(batch: Sequence[Pending]) -> list[AuditRecord]:
    """The events of a batch, the deferred ones built now; one that fails to build becomes a
    failure row naming the error (an audited request never leaves no trace)."""
    events = []
    for item in batch:
        if isinstance(item, AuditRecord):
            events.append(item)
            continue
        if isinstance(item, _Sweep):  # no event: the writer sweeps the journal (_run)
            continue
        try:
            events.append(item())
        except Exception as exc:
            log.exception("audit event could not be built")
            events.append(
                AuditRecord(
                    action="unknown",
                    outcome=Outcome.FAILURE,
                    detail=f"audit event could not be built: {type(exc).__name__}",
                )
            )
    return events


def _filtered(query: Select[Any], f: AuditFilter, *, postgresql: bool) -> Select[Any]:
    """``query`` restricted to the rows ``f`` matches.

    On PostgreSQL the equality filters also go through ``audit_keys(...) @> ARRAY[...]``, the
    form its GIN index serves (alembic revision 0008); SQLite has a B-tree per column.
    """
    wanted = {name: value for name in AUDIT_KEY_COLUMNS if (value := getattr(f, name)) is not None}
    if postgresql and wanted:
        query = query.where(
            AUDIT_KEYS.contains(
                [AUDIT_KEY_TAGS[name] + value[:AUDIT_KEY_CHARS] for name, value in wanted.items()]
            )
        )
    for name, value in wanted.items():
        query = query.where(getattr(AuditEvent, name) == value)
    if f.since is not None:
        query = query.where(AuditEvent.time >= _utc(f.since))
    if f.until is not None:
        query = query.where(AuditEvent.time < _utc(f.until))
    return query


async def _patient_ids(conn: AsyncConnection, batch: Sequence[AuditRecord]) -> dict[str, Any]:
    """The PatientID of each study that events name without a patient (one query per batch)."""
    wanted = {e.study_uid for e in batch if e.study_uid and e.patient_id is None}
    if not wanted:
        return {}
    return dict(
        (
            await conn.execute(
                select(Study.study_uid, Study.patient_id).where(Study.study_uid.in_(wanted))
            )
        ).all()
    )


#: actions whose events :func:`aggregate` may merge: reads, which a viewer makes by the hundred
#: (a frame request per image); stores, deletions, failed logins and audit queries keep a row each
AGGREGATED_ACTIONS: Final = frozenset(
    {"search", "retrieve", "metadata", "frames", "render", "bulkdata", "capabilities"}
)
#: what two events must share to be merged: all but time, instance, count and request id
_aggregation_key: Final = operator.attrgetter(
    "action",
    "outcome",
    "status",
    "actor",
    "client_id",
    "source",
    "study_uid",
    "series_uid",
    "patient_id",
    "detail",
)


def aggregate(batch: Sequence[AuditRecord]) -> list[AuditRecord]:
    """``batch`` with the reads of one caller on one series merged into one record each.

    Events merge when they share everything but time, SOP instance, count and request id (same
    actor, client, address, action, outcome, status, study, series, patient and route) and the
    action is one of :data:`AGGREGATED_ACTIONS`. A merged record keeps the first event's time,
    request id and place in the batch; its ``requests`` is the number of events, its ``count``
    their sum, and its instance UID the one they share, if they do. This is the granularity of a
    DICOM "Instances Accessed" audit message (PS3.15 A.5.3.2): who read which study of which
    patient, from where, when, how much. The batch spans at most the writer's linger (0.1 s by
    default), so a merged row is never late.

    >>> batch = [AuditRecord("frames", "success", instance_uid=f"1.{i}", series_uid="2",
    ...                      request_id=str(i)) for i in range(3)]
    >>> [merged] = aggregate(batch)
    >>> (merged.requests, merged.instance_uid, merged.request_id)
    (3, None, '0')
    """
    out: list[AuditRecord] = []
    groups: dict[tuple[Any, ...], int] = {}  # key -> index in out
    for event in batch:
        if event.action not in AGGREGATED_ACTIONS:
            out.append(event)
            continue
        key = _aggregation_key(event)
        at = groups.get(key)
        if at is None:
            groups[key] = len(out)
            out.append(event)
            continue
        first = out[at]
        if first.requests is None:  # the first merge: a copy, never the caller's record
            first = out[at] = replace(first, requests=1)
        first.requests = (first.requests or 1) + (event.requests or 1)
        if first.instance_uid != event.instance_uid:
            first.instance_uid = None
        if event.count is not None:
            first.count = (first.count or 0) + event.count
        if event.time < first.time:
            first.time = event.time
    return out


#: events built or hashed between two returns to the event loop (about 0.1 ms of CPU)
_SLICE = 8


async def _chain_in_slices(
    batch: Sequence[AuditRecord], patients: dict[str, Any], seq: int, prev: str
) -> list[tuple[Any, ...]]:
    """:func:`_chain` of a batch, a slice at a time: the writer shares its process's event
    loop with the requests, and a full batch hashed in one go would hold them up for
    milliseconds (the chain head stays locked meanwhile, so the result is the same)."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(batch), _SLICE):
        if start:
            await asyncio.sleep(0)
        chained = _chain(batch[start : start + _SLICE], patients, seq, prev)
        seq, prev = chained[-1][_SEQ_AT], chained[-1][_HASH_AT]
        rows += chained
    return rows


def _chain(
    batch: Sequence[AuditRecord], patients: dict[str, Any], seq: int, prev: str
) -> list[tuple[Any, ...]]:
    """The rows, as values in :data:`_COLUMNS` order, that append ``batch`` to the chain after
    ``seq``/``prev``.

    An event naming a study but no patient gets the study's PatientID from ``patients``. The
    canonical form that is hashed (:func:`row_hash`'s) is built directly, in one dict, then
    completed into the row: this runs once per audited request.
    """
    rows = []
    for event in batch:
        seq += 1
        time = event.time
        if time.tzinfo is not UTC:
            time = _utc(time)
        study, patient, requests = event.study_uid, event.patient_id, event.requests
        if patient is None and study:
            patient = patients.get(study) or None
        row: dict[str, Any] = {
            "action": event.action,
            "actor": event.actor,
            "client_id": event.client_id,
            "count": event.count,
            "detail": event.detail,
            "instance_uid": event.instance_uid,
            "outcome": event.outcome,
            "patient_id": patient,
            "request_id": event.request_id,
            "seq": seq,
            "series_uid": event.series_uid,
            "source": event.source,
            "status": event.status,
            "study_uid": study,
            "time": _stamp(time),
        }
        if requests is not None:  # hashed only when set
            row[_REQUESTS] = requests
        try:
            payload = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            # text no UTF-8 encoder takes: a surrogate code point, as a token's JSON may spell
            # one ("\\ud800"), would fail this batch forever; it becomes U+FFFD (anything else
            # unstorable fails again here, for :meth:`AuditLog._narrowed` to find)
            row = {name: _storable(value) for name, value in row.items()}
            payload = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        if b"\\u0000" in payload:  # JSON's escape of NUL (or a value spelling it out)
            # PostgreSQL stores no NUL in text: such an event (a %00 in a requested path) would
            # fail its batch forever and stall the whole log, so NUL becomes U+FFFD
            row = {name: _storable(value) for name, value in row.items()}
            payload = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(prev.encode() + b"\n" + payload).hexdigest()
        row["time"], row[_REQUESTS], row["prev_hash"], row["hash"] = time, requests, prev, digest
        rows.append(_values_of(row))
        prev = digest
    return rows


def _storable(value: Any) -> Any:
    """``value`` as a row can store it (text through :func:`~app.dicom.text.storable`)."""
    return storable(value) if isinstance(value, str) else value

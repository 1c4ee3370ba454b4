"""The audit trail (GEN-10, DIMSE-14): who did what to which patient's images, and how it ended.

Every front end records through one :class:`AuditLog` (``services.audit.record(...)``): HTTP once
per request, DIMSE (later) once per association operation with the calling AE title as the actor.
``record`` only queues the event; one writer task commits queued events in batches. When the queue
is full, ``record`` waits (back-pressure): an event is never dropped silently. A batch that cannot
be written is retried until it is; if the log is closed while the database is down, the number of
events lost is logged as an error.

Rows are append-only and hash-chained: ``hash = sha256(prev_hash || canonical content)``, with
``seq`` numbering the chain without gaps, so :meth:`AuditLog.verify` finds an edited, inserted or
removed row. Each batch takes the chain head under a lock (a PostgreSQL advisory lock across
processes; SQLite serialises writers), so concurrent writers keep one valid chain.
"""

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from sqlalchemy import Select, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.db import Database
from app.index.models import AuditEvent, Study

__all__ = ["GENESIS", "AuditFilter", "AuditLog", "AuditRecord", "ChainReport", "Outcome"]

log = logging.getLogger(__name__)

GENESIS: Final = "0" * 64
#: pg_advisory_xact_lock key serialising chain appends across processes ("LBAUDIT")
_CHAIN_LOCK: Final = 0x4C4241554449540


class Outcome:
    """``outcome`` values (mapped to DICOM EventOutcomeIndicator on export)."""

    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited transaction, as a front end reports it."""

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


def _utc(value: datetime) -> datetime:
    """Aware UTC (SQLite hands back naive datetimes of what was stored as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def row_hash(prev_hash: str, seq: int, content: dict[str, Any]) -> str:
    """The chain hash of one row: SHA-256 over the previous hash, ``seq`` and the content."""
    canonical = dict(content)
    canonical["time"] = _utc(canonical["time"]).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    canonical["seq"] = seq
    payload = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + b"\n" + payload).hexdigest()


def _content(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _CONTENT_FIELDS}


def as_json(row: Any) -> dict[str, Any]:
    """A stored row as a JSON-ready dict (API, export)."""
    out = _content(row)
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
    ) -> None:
        self._db = db
        self._queue: asyncio.Queue[AuditRecord] = asyncio.Queue(maxsize=max(1, queue_size))
        self._batch_size = max(1, batch_size)
        #: how long the writer waits for more events before committing a batch: one transaction
        #: (lock, chain head, PatientID look-up, insert) then serves many requests
        self._linger = max(0.0, linger)
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    async def record(self, event: AuditRecord | None = None, /, **fields: Any) -> None:
        """Queue one event (``record(AuditRecord(...))`` or ``record(action=..., outcome=...)``).

        Waits while the queue is full, so a slow database slows callers down instead of losing
        events.
        """
        if event is None:
            event = AuditRecord(**fields)
        if self._closing:
            raise RuntimeError("the audit log is closed")
        self._ensure_writer()
        await self._queue.put(event)

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    async def flush(self) -> None:
        """Wait until every event queued so far is committed."""
        if self._writer is None:
            return
        await self._queue.join()

    async def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._writer is None:
            self._closing = True
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout=30)
        except TimeoutError:
            log.error("audit log closed with %d events not written", self._queue.qsize())
        self._closing = True
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            delay = 0.05
            while True:
                try:
                    await self._write(batch)
                    break
                except asyncio.CancelledError:
                    log.error("audit writer stopped with %d events not written", len(batch))
                    raise
                except Exception as exc:  # the database is down or busy: retry, never drop
                    log.warning("audit write failed (%s); retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            for _ in batch:
                self._queue.task_done()

    async def _next_batch(self) -> list[AuditRecord]:
        """The next events to write: the first one, then whatever arrives within the linger."""
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (0.0 if self._closing else self._linger)
        while len(batch) < self._batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                # a cancelled Queue.get leaves the item in the queue: nothing is lost
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _write(self, batch: Sequence[AuditRecord]) -> None:
        async with self._db.write() as conn:
            batch = await _patient_ids(conn, batch)
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK})
            head = (
                await conn.execute(
                    select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
                )
            ).first()
            seq, prev = (head.seq, head.hash) if head is not None else (0, GENESIS)
            rows = []
            for event in batch:
                seq += 1
                content = {name: getattr(event, name) for name in _CONTENT_FIELDS}
                content["time"] = _utc(content["time"])
                digest = row_hash(prev, seq, content)
                rows.append({**content, "seq": seq, "prev_hash": prev, "hash": digest})
                prev = digest
            await conn.execute(insert(AuditEvent), rows)

    # --- reading -----------------------------------------------------------------------------

    async def search(
        self, filters: AuditFilter, *, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of events matching ``filters`` (newest first) and the number matching."""
        query = _filtered(select(AuditEvent), filters)
        count = _filtered(select(func.count()).select_from(AuditEvent), filters)
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
                query = _filtered(query, filters)
            async with self._db.read() as conn:
                chunk = (await conn.execute(query.order_by(AuditEvent.seq).limit(1000))).all()
            if not chunk:
                return
            for row in chunk:
                yield as_json(row)
            last = chunk[-1].seq

    async def verify(self) -> ChainReport:
        """Walk the chain: every row's hash recomputed, every link and ``seq`` checked."""
        report = ChainReport()
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


def _filtered(query: Select[Any], f: AuditFilter) -> Select[Any]:
    if f.patient_id is not None:
        query = query.where(AuditEvent.patient_id == f.patient_id)
    if f.study_uid is not None:
        query = query.where(AuditEvent.study_uid == f.study_uid)
    if f.actor is not None:
        query = query.where(AuditEvent.actor == f.actor)
    if f.action is not None:
        query = query.where(AuditEvent.action == f.action)
    if f.since is not None:
        query = query.where(AuditEvent.time >= _utc(f.since))
    if f.until is not None:
        query = query.where(AuditEvent.time < _utc(f.until))
    return query


async def _patient_ids(conn: AsyncConnection, batch: Sequence[AuditRecord]) -> list[AuditRecord]:
    """Fill in the PatientID of events that name a study but no patient (one query per batch)."""
    wanted = {e.study_uid for e in batch if e.study_uid and e.patient_id is None}
    if not wanted:
        return list(batch)
    found = dict(
        (
            await conn.execute(
                select(Study.study_uid, Study.patient_id).where(Study.study_uid.in_(wanted))
            )
        ).all()
    )
    out = []
    for event in batch:
        if event.study_uid and event.patient_id is None and found.get(event.study_uid):
            event = AuditRecord(**{**asdict(event), "patient_id": found[event.study_uid]})
        out.append(event)
    return out

"""The audit log's batching writer (:class:`AuditLog`): events are queued, and one writer task
appends them to the hash chain in batches, retried until written (the package's docstring says
what is batched and what is committed with its write)."""

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from app.index.audit import journal as journal_table
from app.index.audit.chain import ChainStore
from app.index.audit.events import AuditFilter
from app.index.db import Database
from app.services.audit import journal, reading
from app.services.audit.aggregation import aggregate
from app.services.audit.batches import Pending, built_in_slices, stand_in
from app.services.audit.chain import GENESIS, ChainReport, chain_rows_in_slices
from app.services.audit.journal import Sweep, WriteAudit, journaled
from app.services.audit.records import AuditRecord, Outcome
from app.services.metrics.audit import record_audit_failure, record_audit_written

__all__ = ["AuditLog"]

log = logging.getLogger(__name__)

#: how long the writer keeps its PostgreSQL connection while no event comes
_HOLD_SECONDS: Final = 1.0
#: the pauses between failed attempts at a batch: 0.05 s, doubling up to 5 s (the last repeats)
_RETRY_DELAYS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0)
#: failed attempts at a batch after which, if the database answers, it is searched for an event
#: the database refuses (:meth:`AuditLog._narrowed`)
_NARROW_AFTER: Final = 3


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
        #: their request is still running in this process (see the package's docstring)
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
        #: the chain's side of the database; on PostgreSQL it keeps the writer's connection from
        #: one batch to the next while events keep coming
        self._chain = ChainStore(db)
        #: when (event loop time) the writer last took a batch, or the oldest waiting event came
        #: (:meth:`lag_seconds`)
        self._progress = 0.0

    @property
    def queue_depth(self) -> int:
        """Events queued and not yet taken by the writer (metrics)."""
        return self._queue.qsize()

    def lag_seconds(self) -> float:
        """How long the queued events have waited for the writer at most (0 when none waits):
        a linger's length while it keeps up, the outage's when the database is down."""
        if self._queue.empty():
            return 0.0
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:  # no loop: nothing is written either
            return 0.0
        return max(0.0, now - self._progress)

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
        await self.record_later(Sweep(datetime.now(UTC)))
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
        if self._queue.empty():  # the oldest waiting event (lag_seconds)
            self._progress = asyncio.get_running_loop().time()
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            await self._queue.put(event)
        if self._queue.qsize() >= self._wake_at:
            self._full.set()  # a full batch (or a full queue) is waiting: no need to linger

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            # in a context of its own: the request that happens to start it must not lend the
            # writer its id for good (app.logs)
            self._writer = asyncio.get_running_loop().create_task(
                self._run(), name="audit-writer", context=contextvars.Context()
            )

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
        # a connection is never carried over from another writer (or loop)
        self._chain = ChainStore(self._db)
        loop = asyncio.get_running_loop()
        self._next_sweep = loop.time() + self._grace
        try:
            while True:
                batch = await self._next_batch()
                events = await built_in_slices(batch)
                if self._aggregate:  # once per batch, not again on each retry of its write
                    events = aggregate(events)
                for item in batch:
                    if isinstance(item, Sweep) and (
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
                owned = await journal_table.rows(conn, [i for e in failed for i in e.supersedes])
                if due is not None:
                    found = await journal_table.older_than(conn, due, limit)
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
                    self._queue.put_nowait(Sweep(due))
        by_id = {row["id"]: journaled(row) for row in owned}
        out = [journaled(row) for row in found if row["id"] not in skip]
        expand = {id(e) for e in failed}
        for event in events:
            if id(event) in expand:
                out += [by_id[i] for i in event.supersedes if i in by_id]
                event.supersedes = ()  # each of them claims its own row
            out.append(event)
        return out

    async def _release(self) -> None:
        await self._chain.release()

    async def _next_batch(self) -> list[Pending]:
        """The next events to write: the first one, then whatever arrives within the linger.

        The writer sleeps through the linger once (woken early when a full batch is waiting)
        rather than waiting for each event on its own: a timed wait per event cost more CPU
        than writing the event.
        """
        if not self._chain.holding:
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
            and not isinstance(batch[0], Sweep)
        )
        if lingering and self._queue.qsize() < self._wake_at:
            self._full.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._linger)
        while len(batch) < self._batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        self._progress = asyncio.get_running_loop().time()
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
                record_audit_failure()
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
        (:func:`~app.services.audit.batches.stand_in`) and logged whole as an error.

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
            await self._write([stand_in(event, refused)])
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
        """Append ``batch`` to the chain in one transaction, PatientIDs filled in from the index
        (:mod:`app.index.audit.chain`: on PostgreSQL four round trips on the driver's connection,
        a fifth for the journal rows a batch holding a write's row claims)."""
        claims = journal.claims(batch)
        async with self._chain.transaction() as tx:
            if claims:  # after the lock: what another writer claimed is gone
                batch = journal.claimed(batch, await tx.claim(claims))
                if not batch:  # every journal row of the batch was another writer's to chain
                    return
            head = await tx.head(
                {e.study_uid for e in batch if e.study_uid and e.patient_id is None}
            )
            tx.append(
                await chain_rows_in_slices(batch, head.patients, head.seq, head.hash or GENESIS)
            )
        record_audit_written(len(batch))

    # --- reading -----------------------------------------------------------------------------

    async def search(
        self, filters: AuditFilter, *, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of events matching ``filters`` (newest first) and the number matching."""
        return await reading.search(self._db, filters, limit=limit, offset=offset)

    def rows(self, filters: AuditFilter | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every event in chain order (export), read in chunks."""
        return reading.export(self._db, filters)

    async def verify(self) -> ChainReport:
        """Walk the chain: every row's hash recomputed, every link and ``seq`` checked; the
        journal rows waiting to be chained are counted (``pending``), not problems."""
        return await reading.verify(self._db)

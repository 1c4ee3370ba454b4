"""Group commit: single-instance stores of many requests share index transactions (DIMSE-05).

A modality sends one instance per C-STORE and waits for the answer before it sends the next, and
the answer may only go once the instance is durable (DESIGN.md §4). One index transaction per
instance would make a commit (a WAL flush, the locks of the study and series rows, the Python
around them) the price of every image, paid again by each of several associations.

:meth:`GroupCommit.prepare` parses a part (and fsyncs its spool file, so that storing the blob
is a rename) in the caller's thread, concurrently with the other callers', within the ingest
parse bound; :meth:`GroupCommit.submit` queues it. A DIMSE association's thread does the first
itself and hops into the services' loop only for the second: no hop to a worker thread and back
(:meth:`GroupCommit.store` does both for a caller on the loop, the parse in a worker thread).

When no commit is in flight the queue goes at once (a lone store waits for nothing); while one
is in flight, the parts that arrive meanwhile gather and go together in the next transaction, up
to ``max_batch`` instances. The batch size thus follows the load by itself: one when idle, as
many as arrived during one commit under load. A batch about to go also waits for the parts being
parsed at that moment, for ``gather_seconds`` (5 ms) at most: they are ready within a few ms,
and a transaction's CPU hardly grows with its size (PostgreSQL, 0.5 MB CT instances, measured
on the loaded development machine: some 4 ms for one instance, 6 for four), which under several
storing associations is what bounds the rate (the DIMSE process's threads share one GIL). Each
caller gets its own outcome: the ingest write protocol settles every instance on its own inside
the transaction (a duplicate or a patient conflict fails that instance, not its batch), and each
caller's audit row is committed with its instance.

Queueing and committing run on the services' event loop (the DIMSE process's, through the
bridge); callers in other threads reach it there.
"""

import asyncio
import functools
import logging
import threading
from dataclasses import dataclass
from typing import Final, NamedTuple

import anyio.to_thread

from app.errors import (
    DataSetMismatch,
    InstanceRejected,
    InstanceUidMismatch,
    InvalidInstance,
    OutOfResources,
)
from app.services.audit import WriteAudit
from app.services.ingest import IngestService, InstanceOutcome, Prepared
from app.services.metrics import IngestProtocol, record_ingest
from app.services.spool import SpooledPart

__all__ = ["Announced", "CommitStats", "GroupCommit"]

log = logging.getLogger(__name__)

#: the longest a batch waits for parts still being parsed (see the module's docstring)
GATHER_SECONDS: Final = 0.005


class Announced(NamedTuple):
    """What the request said it carries (a C-STORE's Affected SOP Class / Instance UID)."""

    sop_class_uid: str
    sop_uid: str


@dataclass(slots=True)
class CommitStats:
    """What the group commit did so far (the metrics of its batching)."""

    #: index transactions (batches) committed or attempted
    batches: int = 0
    #: instances that went through them
    instances: int = 0
    #: the largest batch
    largest: int = 0


class GroupCommit:
    """Stores single parts, committing those that arrive together in one transaction."""

    def __init__(
        self,
        ingest: IngestService,
        *,
        max_batch: int = 64,
        max_in_flight: int = 1,
        gather_seconds: float = GATHER_SECONDS,
        protocol: IngestProtocol = "cstore",
    ):
        self._ingest = ingest
        #: what the stores are counted under (metrics)
        self._protocol: IngestProtocol = protocol
        self._max_batch = max(1, max_batch)
        self._max_in_flight = max(1, max_in_flight)
        self._gather_seconds = max(0.0, gather_seconds)
        self._queue: list[tuple[Prepared, asyncio.Future[None]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: parts being parsed by :meth:`prepare` (in any thread): the next batch waits for them
        self._preparing = 0
        self._preparing_lock = threading.Lock()
        #: the timer that ends a wait for parts being parsed, and whether it has
        self._gathering: asyncio.TimerHandle | None = None
        self._gather_over = False
        self.stats = CommitStats()

    async def store(
        self,
        part: SpooledPart,
        *,
        announced: Announced | None = None,
        audit: WriteAudit | None = None,
    ) -> InstanceOutcome:
        """Store one spooled part; returns once its outcome is durable (or known to fail).

        ``announced`` are the UIDs the request named: a data set that is another instance or
        another SOP class fails with :class:`~app.errors.DataSetMismatch` (0xA900). The part is
        consumed (moved into the store, or discarded) either way. The part is parsed in a
        worker thread; a caller in a thread of its own calls :meth:`prepare` there, then
        :meth:`submit`.
        """
        prepared = await anyio.to_thread.run_sync(
            functools.partial(self.prepare, part, announced=announced, audit=audit)
        )
        return await self.submit(prepared)

    def prepare(
        self,
        part: SpooledPart,
        *,
        announced: Announced | None = None,
        audit: WriteAudit | None = None,
    ) -> Prepared | InstanceOutcome:
        """Parse and admit ``part`` in the calling thread (blocking; not the event loop's): what
        :meth:`submit` commits, or the outcome of a part refused already (consumed)."""
        outcome = InstanceOutcome(None, None)
        outcome.size = part.size
        with self._preparing_lock:
            self._preparing += 1
        try:
            return self._prepare(part, outcome, announced, audit)
        except InstanceRejected as exc:
            part.discard()
            return outcome.refuse(exc)
        except Exception:
            log.exception("unexpected error while parsing an instance")
            part.discard()
            return outcome.refuse(InvalidInstance("the instance could not be processed"))
        finally:
            with self._preparing_lock:
                self._preparing -= 1

    async def submit(self, prepared: Prepared | InstanceOutcome) -> InstanceOutcome:
        """Commit a part :meth:`prepare` returned, with the others that are ready; returns once
        its outcome is durable (or known to fail). A refusal is only counted."""
        if isinstance(prepared, InstanceOutcome):
            self._pump()  # a batch may have been waiting for this part
            return self._counted(prepared)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((prepared, done))
        self._pump()
        # a caller that gives up (its association went away) leaves the commit to finish
        await asyncio.shield(done)
        return self._counted(prepared.outcome)

    def _counted(self, outcome: InstanceOutcome) -> InstanceOutcome:
        """``outcome``, counted in the ingest metrics."""
        if outcome.stored:
            record_ingest(self._protocol, 1, outcome.size)
        else:
            record_ingest(self._protocol, 0, 0, [outcome.reason or "unknown"])
        return outcome

    def _prepare(
        self,
        part: SpooledPart,
        outcome: InstanceOutcome,
        announced: Announced | None,
        audit: WriteAudit | None,
    ) -> Prepared:
        try:
            parsed = self._ingest.parse_blocking(part)
        except InstanceUidMismatch as exc:
            if announced is None:
                raise
            # the File Meta was written from the request: the data set is another instance
            outcome.sop_class_uid, outcome.sop_uid = announced
            raise DataSetMismatch(
                "the data set's SOP Instance UID differs from the Affected SOP Instance UID"
            ) from exc
        instance = parsed.instance
        outcome.sop_class_uid, outcome.sop_uid = instance.sop_class_uid, parsed.sop_uid
        outcome.study_uid, outcome.series_uid = parsed.study_uid, parsed.series_uid
        outcome.patient_id = parsed.study.patient_id
        if announced is not None:
            if parsed.sop_uid != announced.sop_uid:
                raise DataSetMismatch(
                    "the data set's SOP Instance UID differs from the Affected SOP Instance UID"
                )
            if instance.sop_class_uid != announced.sop_class_uid:
                raise DataSetMismatch(
                    "the data set's SOP Class UID differs from the Affected SOP Class UID"
                )
        self._ingest.admit(parsed)
        return Prepared(part, parsed, outcome, audit)

    def _pump(self) -> None:
        while self._queue and self._in_flight < self._max_in_flight:
            if self._gathers():
                return
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._commit(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _gathers(self) -> bool:
        """Whether the next batch waits for the parts being parsed: while it has room for
        them, for ``gather_seconds`` at most (a timer ends the wait)."""
        if self._preparing and len(self._queue) < self._max_batch and not self._gather_over:
            if self._gathering is None and self._gather_seconds:
                loop = asyncio.get_running_loop()
                self._gathering = loop.call_later(self._gather_seconds, self._gathered)
            if self._gathering is not None:
                return True
        if self._gathering is not None:
            self._gathering.cancel()
            self._gathering = None
        self._gather_over = False
        return False

    def _gathered(self) -> None:
        """The wait for parts being parsed is over: the batch goes with those that are ready."""
        self._gathering = None
        self._gather_over = True
        self._pump()

    async def _commit(self, batch: list[tuple[Prepared, asyncio.Future[None]]]) -> None:
        stats = self.stats
        stats.batches += 1
        stats.instances += len(batch)
        stats.largest = max(stats.largest, len(batch))
        try:
            await self._ingest.commit([prepared for prepared, _ in batch])
        except BaseException as exc:
            # commit settles index and store failures per instance; anything else (a defect, a
            # cancellation at shutdown) may have struck before or after the transaction's end:
            # the whole batch is answered as failed (a re-send of a stored one is idempotent),
            # never acknowledged without being sure it is durable
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("group commit failed")
            for prepared, _ in batch:
                prepared.outcome.refuse(OutOfResources("the instance could not be committed"))
                prepared.part.discard()
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
            self._in_flight -= 1
            self._pump()

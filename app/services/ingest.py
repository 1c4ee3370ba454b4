"""Ingest: store instances from STOW-RS, ``lightbox import`` and C-STORE.

The write protocol (DESIGN.md §4), per batch of instances of one request:

1. each part was spooled and hashed while it streamed in; it is parsed once, off the event loop
   (``app.dicom.parse``);
2. one index look-up finds which SOP Instance UIDs and series are already stored, so identical
   re-sends and conflicts are settled before any byte is written (STOW-09/10);
3. the blobs are written under their final keys and are durable when ``put`` returns;
4. the index rows of the whole batch commit in one transaction (one failing instance never rolls
   back the others: conflicts are settled per instance inside it), with the transaction's audit
   row (``app.services.audit``: as durable as the write);
5. only then is the batch's outcome reported, and blobs that no row references any more (replaced
   objects, losers of a race) are removed.

A crash between 3 and 4 leaves blobs no row points at; ``lightbox gc`` removes them after a grace
period. An index row never points at a missing blob.
"""

import asyncio
import functools
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import orjson

from app.config import DuplicatePolicy, PatientConflictPolicy
from app.dicom.instance import ParsedInstance
from app.dicom.parse import parse_instance
from app.dicom.status import Status
from app.errors import (
    DuplicateInstance,
    HierarchyConflict,
    InstanceRejected,
    InvalidInstance,
    OutOfResources,
    SopClassNotSupported,
    StudyMismatch,
    UnindexableInstance,
)
from app.index.db import Database, DriverError, is_data_error, is_retryable
from app.index.deletion import clear_tombstones
from app.index.repository import InstanceIndex, NewInstance, StoredRef, find_stored
from app.services.audit import AuditRecord, Outcome, WriteAudit
from app.services.metrics import IngestProtocol, record_ingest
from app.services.spool import Spool, SpooledPart
from app.storage.base import ObjectStore, StorageError, object_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    """The settings ingest obeys (plain values, read from Settings by the container)."""

    duplicate_policy: DuplicatePolicy = DuplicatePolicy.REJECT
    patient_conflict: PatientConflictPolicy = PatientConflictPolicy.REJECT
    sop_class_allow_list: frozenset[str] = frozenset()
    zero_preamble: bool = False
    spool_memory_bytes: int = 4 * 1024**2
    max_instance_bytes: int = 4 * 1024**3
    max_inflated_bytes: int = 1024**3
    batch_instances: int = 64
    batch_memory_bytes: int = 64 * 1024**2
    parse_concurrency: int = 4
    write_concurrency: int = 8


@dataclass(slots=True)
class InstanceOutcome:
    """What happened to one instance of a request (one item of the STOW response)."""

    sop_class_uid: str | None
    sop_uid: str | None
    study_uid: str | None = None
    series_uid: str | None = None
    #: the instance's PatientID as it was sent (the audit's patient; None if unparsed)
    patient_id: str | None = None
    stored: bool = False
    failure: Status | None = None
    warning: Status | None = None
    message: str = ""
    syntax_failure: bool = False
    #: stored already, byte for byte (an identical re-send: nothing was written)
    existing: bool = False
    #: bytes received for it (metrics)
    size: int = 0
    #: why it was refused, as a metric label: the refusal's kind in snake case
    reason: str = ""

    def refuse(self, error: InstanceRejected) -> "InstanceOutcome":
        """Record ``error`` as this instance's failure."""
        self.stored = False
        self.failure = error.dimse_status
        self.message = error.message
        self.syntax_failure = error.syntax
        self.reason = _reason(type(error).__name__)
        return self

    @property
    def identified(self) -> bool:
        """Whether the instance can be named in FailedSOPSequence (else OtherFailuresSequence)."""
        return bool(self.sop_uid and self.sop_class_uid)


@dataclass(slots=True)
class IngestResult:
    """The outcome of a whole request, in part order."""

    outcomes: list[InstanceOutcome] = field(default_factory=list)

    @property
    def stored(self) -> list[InstanceOutcome]:
        return [o for o in self.outcomes if o.stored]

    @property
    def failed(self) -> list[InstanceOutcome]:
        return [o for o in self.outcomes if not o.stored]


@dataclass(slots=True)
class _Pending:
    index: int
    part: SpooledPart
    parsed: ParsedInstance
    key: str
    #: the request's audit side: its journal row is committed in the transaction that stores it
    audit: WriteAudit | None = None


@dataclass(slots=True)
class Prepared:
    """A part parsed and admitted (:meth:`IngestService.admit`), waiting for its commit
    (:meth:`IngestService.commit`, with parts of other requests), which fills ``outcome``."""

    part: SpooledPart
    parsed: ParsedInstance
    outcome: InstanceOutcome
    audit: WriteAudit | None = None


class IngestService:
    """Stores instances; one :class:`IngestSession` per request or association."""

    def __init__(self, db: Database, store: ObjectStore, policy: IngestPolicy, spool_dir: Path):
        self.db = db
        self.store = store
        self.policy = policy
        self.spool_dir = spool_dir
        self._parse_slots = anyio.CapacityLimiter(policy.parse_concurrency)
        #: the same bound for :meth:`parse_blocking` (callers in threads of their own)
        self._blocking_parse_slots = threading.BoundedSemaphore(policy.parse_concurrency)

    def spool(self) -> Spool:
        """A spool for the next incoming part."""
        return Spool(
            memory_limit=self.policy.spool_memory_bytes,
            max_bytes=self.policy.max_instance_bytes,
            tmp_dir=self.spool_dir,
            zero_preamble=self.policy.zero_preamble,
        )

    def session(
        self,
        *,
        study_uid: str | None = None,
        audit: WriteAudit | None = None,
        protocol: IngestProtocol = "stow",
        bulk: bool = False,
    ) -> "IngestSession":
        """A new ingest session; ``study_uid`` is the STOW target study (STOW-07); each index
        transaction that stores adds its audit row to ``audit`` (when given) as it commits;
        what it stores and refuses is counted under ``protocol`` (metrics). A ``bulk`` session
        (an import) makes each batch's blobs durable together, before the batch's index commit
        (:meth:`~app.storage.base.ObjectStore.put_files`), rather than each on its own."""
        return IngestSession(self, study_uid, audit, protocol, bulk)

    async def parse(self, part: SpooledPart) -> ParsedInstance:
        """Parse one spooled part off the event loop."""
        return await anyio.to_thread.run_sync(self._parse_sync, part, limiter=self._parse_slots)

    def parse_blocking(self, part: SpooledPart, *, sync: bool = True) -> ParsedInstance:
        """Parse one spooled part in the calling thread, which is not the event loop's (a DIMSE
        association's: this spares the hop to a worker thread), within the same bound of
        concurrent parses per process as :meth:`parse` (counted apart). ``sync=False`` leaves
        the spooled file unsynced (a bulk session syncs its batches at once)."""
        with self._blocking_parse_slots:
            return self._parse_sync(part, sync)

    def admit(self, parsed: ParsedInstance, study_uid: str | None = None) -> None:
        """Refuse an instance the policy does not take (raises :class:`InstanceRejected`):
        another study than the request's target (STOW-07), a SOP class off the allow-list."""
        if study_uid is not None and parsed.study_uid != study_uid:
            raise StudyMismatch("StudyInstanceUID does not match the study in the request URL")
        allow = self.policy.sop_class_allow_list
        if allow and parsed.instance.sop_class_uid not in allow:
            raise SopClassNotSupported("SOP class not accepted by this archive")

    async def commit(self, batch: Sequence[Prepared]) -> None:
        """Steps 2-5 of the write protocol for parts of any number of requests in one index
        transaction (the group commit); each item's ``outcome`` says what became of it, and its
        audit row (when it has an audit side) commits with it."""
        pending = [
            _Pending(
                i,
                item.part,
                item.parsed,
                object_key(
                    item.parsed.study_uid,
                    item.parsed.series_uid,
                    item.parsed.sop_uid,
                    item.part.sha256,
                ),
                item.audit,
            )
            for i, item in enumerate(batch)
        ]
        await _commit_batch(self, pending, [item.outcome for item in batch])

    def _parse_sync(self, part: SpooledPart, sync: bool = True) -> ParsedInstance:
        if part.data is not None:
            return parse_instance(part.data, max_inflated_bytes=self.policy.max_inflated_bytes)
        with part.open() as fp:
            parsed = parse_instance(fp, max_inflated_bytes=self.policy.max_inflated_bytes)
            if sync:
                # flush the spooled bytes to disk now, overlapping with the parts still
                # arriving, so that storing the blob later is a rename of durable data
                os.fsync(fp.fileno())
            return parsed


class IngestSession:
    """Collects the parts of one request, then commits them in batches.

    ``add()`` returns at once; parsing runs concurrently with the reception of the next parts,
    bounded by the parse limiter. ``finish()`` waits for everything and returns the result.
    """

    def __init__(
        self,
        service: IngestService,
        study_uid: str | None,
        audit: WriteAudit | None = None,
        protocol: IngestProtocol = "stow",
        bulk: bool = False,
    ) -> None:
        self._svc = service
        self._bulk = bulk
        self._study_uid = study_uid
        self._audit = audit
        self._protocol: IngestProtocol = protocol
        self._result = IngestResult()
        self._pending: list[_Pending] = []
        self._pending_memory = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(service.policy.parse_concurrency * 2)

    async def add(
        self, part: SpooledPart, parsed: ParsedInstance | Exception | None = None
    ) -> InstanceOutcome:
        """Accept one received part (waits only when too many parts are in flight); its
        outcome is filled in by :meth:`finish`. ``parsed``: the part parsed already (by
        :meth:`IngestService.parse_blocking` in the caller's thread), or what that raised."""
        index = len(self._result.outcomes)
        outcome = InstanceOutcome(None, None)
        self._result.outcomes.append(outcome)
        await self._slots.acquire()
        task = asyncio.create_task(self._process(index, part, parsed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return outcome

    def reject_part(
        self,
        error: InstanceRejected,
        *,
        sop_class_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> None:
        """Record a part that failed before it could be parsed (framing, size, media type);
        the UIDs, when known (STOW-02 metadata), name it in FailedSOPSequence."""
        self._result.outcomes.append(
            _outcome_from_error(InstanceOutcome(sop_class_uid, sop_uid), error)
        )

    async def finish(self) -> IngestResult:
        """Wait for every part, commit what is pending, and return the outcome."""
        if self._tasks:
            await asyncio.gather(*self._tasks)
        await self._flush()
        outcomes = self._result.outcomes
        record_ingest(
            self._protocol,
            sum(1 for o in outcomes if o.stored),
            sum(o.size for o in outcomes if o.stored),
            [o.reason or "unknown" for o in outcomes if not o.stored],
        )
        return self._result

    async def abort(self) -> None:
        """Cancel work in flight (the client went away); committed batches stay committed."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for pending in self._pending:
            pending.part.discard()
        self._pending.clear()

    async def _process(
        self, index: int, part: SpooledPart, given: ParsedInstance | Exception | None
    ) -> None:
        outcome = self._result.outcomes[index]
        outcome.size = part.size
        flush = False
        try:
            if isinstance(given, Exception):
                raise given
            parsed = given if given is not None else await self._svc.parse(part)
            outcome.sop_class_uid = parsed.instance.sop_class_uid
            outcome.sop_uid = parsed.sop_uid
            outcome.study_uid = parsed.study_uid
            outcome.series_uid = parsed.series_uid
            outcome.patient_id = parsed.study.patient_id
            self._svc.admit(parsed, self._study_uid)
            key = object_key(parsed.study_uid, parsed.series_uid, parsed.sop_uid, part.sha256)
            self._pending.append(_Pending(index, part, parsed, key, self._audit))
            if part.data is not None:
                self._pending_memory += part.size
            flush = (
                len(self._pending) >= self._svc.policy.batch_instances
                or self._pending_memory >= self._svc.policy.batch_memory_bytes
            )
        except InstanceRejected as exc:
            _outcome_from_error(outcome, exc)
            part.discard()
        except Exception:
            log.exception("unexpected error while parsing an instance")
            _outcome_from_error(outcome, InvalidInstance("the instance could not be processed"))
            part.discard()
        finally:
            self._slots.release()
        if flush:
            await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:
            batch, self._pending, self._pending_memory = self._pending, [], 0
            if batch:
                await _commit_batch(self._svc, batch, self._result.outcomes, bulk=self._bulk)


def _outcome_from_error(outcome: InstanceOutcome, error: InstanceRejected) -> InstanceOutcome:
    return outcome.refuse(error)


@functools.cache
def _reason(kind: str) -> str:
    """A refusal's kind (its class's name) as a metric label.

    >>> _reason("DuplicateInstance"), _reason("SopClassNotSupported")
    ('duplicate_instance', 'sop_class_not_supported')
    """
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


async def _commit_batch(
    svc: IngestService,
    batch: list[_Pending],
    outcomes: list[InstanceOutcome],
    *,
    bulk: bool = False,
) -> None:
    """Steps 2-5 of the write protocol for one batch (``bulk``: its blobs synced together)."""
    policy = svc.policy
    try:
        existing = await find_stored(svc.db, (p.parsed.sop_uid for p in batch))
    except (DriverError, OSError) as exc:
        log.error("index unavailable during ingest: %s", exc)
        _fail_all(batch, outcomes, OutOfResources("the index is unavailable"))
        return

    # 2. settle re-sends before writing anything
    to_write: list[_Pending] = []
    replacing: dict[str, StoredRef] = {}
    seen: dict[str, _Pending] = {}
    for pending in batch:
        sop = pending.parsed.sop_uid
        old = existing.get(sop)
        earlier = seen.get(sop)
        if earlier is not None and earlier.part.sha256 == pending.part.sha256:
            outcomes[pending.index].stored = True  # the same object twice in one request
            outcomes[pending.index].existing = True
            pending.part.discard()
            continue
        if old is not None and old.sha256 == pending.part.sha256:
            outcomes[pending.index].stored = True  # idempotent re-send: nothing rewritten
            outcomes[pending.index].existing = True
            pending.part.discard()
            continue
        if (old is not None or earlier is not None) and (
            policy.duplicate_policy is DuplicatePolicy.REJECT
        ):
            _outcome_from_error(
                outcomes[pending.index],
                DuplicateInstance("a different object with this SOP Instance UID is stored"),
            )
            pending.part.discard()
            continue
        if earlier is not None:
            # overwrite policy, same UID twice in one request: the later one wins
            to_write.remove(earlier)
            outcomes[earlier.index].warning = Status.COERCION_OF_DATA_ELEMENTS
            outcomes[earlier.index].stored = True
            earlier.part.discard()
        if old is not None:
            replacing[sop] = old
        seen[sop] = pending
        to_write.append(pending)

    # 3. blobs first
    written = await _write_blobs(svc.store, to_write, outcomes, policy.write_concurrency, bulk)
    if not written:
        return

    # 4. the index, in one transaction (retried on deadlock / lock time-outs)
    orphans = await _index_retried(svc, written, replacing, outcomes)

    # 5. after the commit: blobs no row references any more
    for key in orphans:
        try:
            await svc.store.delete(key)
        except StorageError:
            log.warning("could not remove unreferenced blob %s; gc will", key)


async def _index_retried(
    svc: IngestService,
    batch: Sequence[_Pending],
    replacing: dict[str, StoredRef],
    outcomes: list[InstanceOutcome],
) -> list[str]:
    """:func:`_index_batch`, retried on deadlock / lock time-outs; returns blob keys to delete."""
    for attempt in range(4):
        try:
            return await _index_batch(svc, batch, replacing, outcomes)
        except (DriverError, OverflowError) as exc:
            if is_data_error(exc):
                if len(batch) > 1:  # one instance's value: each alone, so only it is refused
                    orphans: list[str] = []
                    for pending in batch:
                        orphans += await _index_retried(svc, [pending], replacing, outcomes)
                    return orphans
                # no values in the log (PHI): the driver's error class says what was refused
                log.error("index refused an instance: %s", type(getattr(exc, "orig", exc)))
                _fail_all(batch, outcomes, UnindexableInstance("the index refused a value"))
                return [p.key for p in batch]
            retryable = isinstance(exc, DriverError) and is_retryable(exc, lost_parent=True)
            if attempt == 3 or not retryable:
                log.error("index write failed: %s", exc)
                _fail_all(batch, outcomes, OutOfResources("the index could not be updated"))
                return [p.key for p in batch]
            log.warning("retrying index batch after %s", type(exc).__name__)
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover


async def _write_blobs(
    store: ObjectStore,
    batch: list[_Pending],
    outcomes: list[InstanceOutcome],
    concurrency: int,
    bulk: bool = False,
) -> list[_Pending]:
    """Step 3: each blob durably stored (parts consumed); the parts that were."""
    if bulk:
        return await _write_blobs_together(store, batch, outcomes, concurrency)
    slots = asyncio.Semaphore(concurrency)

    async def write(pending: _Pending) -> bool:
        async with slots:
            part = pending.part
            try:
                if part.data is not None:
                    await store.put_bytes(pending.key, part.data)
                else:
                    assert part.path is not None
                    await store.put_file(pending.key, part.path, move=True)
                return True
            except (StorageError, OSError) as exc:
                log.error("blob write failed: %s", exc)
                _outcome_from_error(
                    outcomes[pending.index], OutOfResources("the object store refused the write")
                )
                return False
            finally:
                part.discard()

    results = await asyncio.gather(*(write(p) for p in batch))
    return [p for p, ok in zip(batch, results, strict=True) if ok]


async def _write_blobs_together(
    store: ObjectStore, batch: list[_Pending], outcomes: list[InstanceOutcome], concurrency: int
) -> list[_Pending]:
    """Step 3 of a bulk session: the spooled files in one :meth:`ObjectStore.put_files` (made
    durable together), the parts held in memory one by one."""
    in_memory = [p for p in batch if p.part.path is None]
    in_files = [(p, p.part.path) for p in batch if p.part.path is not None]
    written = await _write_blobs(store, in_memory, outcomes, concurrency) if in_memory else []
    try:
        failures = await store.put_files(
            [(p.key, path) for p, path in in_files], concurrency=concurrency
        )
    finally:
        for pending, _ in in_files:
            pending.part.discard()
    for (pending, _), failure in zip(in_files, failures, strict=True):
        if failure is None:
            written.append(pending)
            continue
        log.error("blob write failed: %s", failure)
        _outcome_from_error(
            outcomes[pending.index], OutOfResources("the object store refused the write")
        )
    return sorted(written, key=lambda p: p.index)


async def _index_batch(
    svc: IngestService,
    batch: Sequence[_Pending],
    replacing: dict[str, StoredRef],
    outcomes: list[InstanceOutcome],
) -> list[str]:
    """Write the batch's rows, and an audit row per request to its journal (the parts of one
    request share one); returns blob keys to delete after the commit."""
    policy = svc.policy
    orphans: list[str] = []
    for pending in batch:  # a retried attempt starts from a clean slate
        outcome = outcomes[pending.index]
        outcome.stored, outcome.failure, outcome.warning, outcome.message = False, None, None, ""
        outcome.existing = False
    async with svc.db.write() as conn:
        index = InstanceIndex(conn)
        # studies, then series, then instances, each in UID order (no lock cycles)
        study_rows = await index.ensure_studies(
            (p.parsed.study, p.parsed.study_json) for p in batch
        )
        studies = {uid: (r.id, r.patient_id, r.created) for uid, r in study_rows.items()}
        # STOW-10: a study already held under another PatientID (before any series is made)
        admitted: list[_Pending] = []
        for pending in batch:
            parsed = pending.parsed
            outcome = outcomes[pending.index]
            _, patient_id, _ = studies[parsed.study_uid]
            if (patient_id or "") != (parsed.study.patient_id or ""):
                if policy.patient_conflict is PatientConflictPolicy.REJECT:
                    _outcome_from_error(
                        outcome,
                        HierarchyConflict("the study is already held under another PatientID"),
                    )
                    orphans.append(pending.key)
                    continue
                outcome.warning = Status.COERCION_OF_DATA_ELEMENTS
            admitted.append(pending)
        series_rows = await index.ensure_series(
            (p.parsed.series, studies[p.parsed.study_uid][0], p.parsed.series_json)
            for p in admitted
        )
        series = {uid: (r.id, r.study_id, r.created) for uid, r in series_rows.items()}

        inserts: list[tuple[NewInstance, int, int]] = []
        replaced: list[_Pending] = []
        by_sop: dict[str, _Pending] = {}
        series_added: dict[int, int] = {}
        studies_added: dict[int, tuple[int, int]] = {}
        for pending in sorted(admitted, key=lambda p: p.parsed.sop_uid):
            parsed = pending.parsed
            outcome = outcomes[pending.index]
            study_id = studies[parsed.study_uid][0]
            series_id, series_study_id, _ = series[parsed.series_uid]
            if series_study_id != study_id:
                _outcome_from_error(
                    outcome, HierarchyConflict("the series is already filed under another study")
                )
                orphans.append(pending.key)
                continue
            new = NewInstance(
                parsed,
                pending.key,
                pending.part.size,
                pending.part.sha256,
                orjson.dumps(parsed.frames.to_json()) if parsed.frames is not None else None,
                pending.part.prefixed,
            )
            old = replacing.get(parsed.sop_uid)
            if old is not None:
                if old.series_id != series_id:
                    _outcome_from_error(
                        outcome,
                        HierarchyConflict("the instance is stored under another series"),
                    )
                    orphans.append(pending.key)
                    continue
                await index.replace_instance(old, new)
                replaced.append(pending)
                outcome.stored = True
                outcome.warning = Status.COERCION_OF_DATA_ELEMENTS
                if old.blob_key != pending.key:
                    orphans.append(old.blob_key)
                continue
            inserts.append((new, series_id, study_id))
            by_sop[parsed.sop_uid] = pending

        inserted = await index.insert_instances(inserts)
        raced = [sop for sop in by_sop if sop not in inserted]
        if raced:
            # another request stored the same SOP Instance UID since our look-up
            winners = await index.find_instances(raced)
            for sop in raced:
                pending = by_sop[sop]
                winner = winners.get(sop)
                if winner is not None and winner.sha256 == pending.part.sha256:
                    outcomes[pending.index].stored = True
                    outcomes[pending.index].existing = True
                    continue  # same content, same key: the blob is the winner's too
                _outcome_from_error(
                    outcomes[pending.index],
                    DuplicateInstance("a different object with this SOP Instance UID is stored"),
                )
                orphans.append(pending.key)
        created_series: set[int] = set()
        for sop in inserted:
            pending = by_sop[sop]
            outcomes[pending.index].stored = True
            series_id, study_id, created = series[pending.parsed.series_uid]
            series_added[series_id] = series_added.get(series_id, 0) + 1
            n_series, n_instances = studies_added.get(study_id, (0, 0))
            if created and series_id not in created_series:
                created_series.add(series_id)
                n_series += 1
            studies_added[study_id] = (n_series, n_instances + 1)
        # a study or series this transaction created but that received no instance is not kept
        replaced_series = {old.series_id for old in replacing.values()}
        await index.delete_empty(
            series_ids=[
                sid
                for sid, _, created in series.values()
                if created and sid not in series_added and sid not in replaced_series
            ],
            study_ids=[
                sid for sid, _, created in studies.values() if created and sid not in studies_added
            ],
        )
        await index.bump_counts(series_added, studies_added)
        if inserted:  # stored again after a DELETE: the resources exist again (DEL-04)
            stored = [by_sop[sop].parsed for sop in inserted]
            await clear_tombstones(
                conn, [uid for p in stored for uid in (p.sop_uid, p.series_uid, p.study_uid)]
            )
        written = replaced + [by_sop[sop] for sop in sorted(inserted)]
        requests: dict[int, tuple[WriteAudit, list[ParsedInstance]]] = {}
        for pending in written:
            if pending.audit is not None:
                requests.setdefault(id(pending.audit), (pending.audit, []))[1].append(
                    pending.parsed
                )
        for audit, parsed_list in requests.values():
            await audit.journal(conn, _stored_event(parsed_list, studies))
    return orphans


def _stored_event(
    written: Sequence[ParsedInstance], studies: dict[str, tuple[int, str | None, bool]]
) -> AuditRecord:
    """The audit row of one transaction that stored ``written``: the study, series and
    instance when there is one of each, and the study's PatientID as the index holds it."""
    study = _only({p.study_uid for p in written})
    return AuditRecord(
        action="store",
        outcome=Outcome.SUCCESS,
        study_uid=study,
        series_uid=_only({p.series_uid for p in written}),
        instance_uid=_only({p.sop_uid for p in written}),
        patient_id=studies[study][1] if study is not None else None,
        count=len(written),
        detail=f"{len(written)} stored (the row committed with the write)",
    )


def _only(values: set[str]) -> str | None:
    """The one value of ``values``, or None when there are several."""
    return next(iter(values)) if len(values) == 1 else None


def _fail_all(
    batch: Sequence[_Pending], outcomes: list[InstanceOutcome], error: InstanceRejected
) -> None:
    for pending in batch:
        _outcome_from_error(outcomes[pending.index], error)
        outcomes[pending.index].stored = False
        pending.part.discard()

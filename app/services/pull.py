"""Pull: migrate a legacy PACS into Lightbox (issue 21, point 7), as a resumable job.

``lightbox pull --from AE`` and ``POST /api/jobs/pull`` both run :meth:`PullService.run`:

1. search the source (a C-FIND, Study Root) for the studies matching the request, or with
   ``level=SERIES`` for their series: each one is a *unit* of the job (``job_item``);
2. for each unit not done yet, at most ``concurrency`` at once: list its instances at the
   source, compare their SOP Instance UIDs with the index, and skip the unit when everything is
   held; else fetch what is missing (a C-GET: the source sends the instances back on the same
   association and they go through the ingest of STOW-RS, no HTTP hop; or a C-MOVE to our own
   DIMSE listener, whose C-STORE SCP ingests them), then check in the index that they arrived;
3. record the unit's outcome and its audit row (the patient and the study), and the job's.

Re-running the same request finds the same job (its fingerprint) and continues: units done or
skipped are not asked for again, units pending or failed are, and within a unit only the
instances the index does not hold are fetched. DIMSE gives no content hash before a transfer,
so "held" means the SOP Instance UID is indexed; an instance that arrives again anyway is
compared by SHA-256 at ingest (identical: nothing written; different: a conflict under the
duplicate policy, reported as the unit's failure).

The source is a port (:class:`PullSource`): ``app.services`` does not speak DIMSE (pynetdicom
stays in ``app.dimse``, which implements it); the entry points plug a factory in
(:class:`SourceFactory`, given to ``open_services``).
"""

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final, Protocol

from app.dicom.attributes import Level, level_of
from app.dicom.query import keyword_of, parse_tag
from app.errors import BadRequest, Conflict, LightboxError, Unavailable
from app.index.db import Database
from app.index.repository import InstanceIndex
from app.services.aes import RemoteAe, RemoteAeService
from app.services.audit import AuditLog, AuditRecord, Outcome
from app.services.ingest import IngestService, IngestSession
from app.services.jobs import ItemRow, Job, JobLease, JobService, JobState, Progress
from app.services.spool import Spool, SpooledPart

__all__ = [
    "FetchOutcome",
    "InstanceSink",
    "PullLevel",
    "PullMethod",
    "PullReport",
    "PullRequest",
    "PullService",
    "PullSource",
    "SourceError",
    "SourceFactory",
    "SourceInstance",
    "SourceUnit",
]

log = logging.getLogger(__name__)

KIND: Final = "pull"
#: most units pulled at once (associations to the source)
MAX_CONCURRENCY: Final = 32
#: SOP Instance UIDs per C-GET/C-MOVE of a part of a unit (the identifier's size)
UIDS_PER_REQUEST: Final = 500


class PullMethod(StrEnum):
    """How the instances come: C-GET on the same association, or C-MOVE to our listener."""

    GET = "get"
    MOVE = "move"


class PullLevel(StrEnum):
    """The unit of work: a study, or a series."""

    STUDY = "STUDY"
    SERIES = "SERIES"


class SourceError(LightboxError):
    """The source could not be reached, refused the association, or failed a request."""

    http_status = 502


@dataclass(frozen=True, slots=True)
class SourceUnit:
    """A study (or a series) found at the source."""

    study_uid: str
    series_uid: str | None = None
    patient_id: str | None = None
    #: instances the source announced (NumberOfStudy/SeriesRelatedInstances), if it did
    instances: int | None = None

    @property
    def key(self) -> str:
        return self.series_uid or self.study_uid


@dataclass(frozen=True, slots=True)
class SourceInstance:
    """An instance listed by the source."""

    sop_uid: str
    series_uid: str
    sop_class_uid: str | None = None


@dataclass(slots=True)
class FetchOutcome:
    """What the source reported for a fetch (the sub-operation counts of its final answer)."""

    completed: int = 0
    failed: int = 0
    warning: int = 0
    #: the source's final status, when it sent one
    status: int | None = None
    #: why the fetch ended early (association aborted, refused ...), else None
    error: str | None = None


class InstanceSink(Protocol):
    """Where a source delivers the instances of a C-GET (implemented here, called by the source
    from its own thread for :meth:`spool`, from the services loop for :meth:`accept`)."""

    def spool(self) -> Spool:
        """A spool for the next instance: the source writes the PS3.10 bytes into it."""
        ...

    async def accept(self, part: SpooledPart) -> None:
        """Ingest one received instance (returns once it is queued; commits are batched)."""
        ...


class PullSource(Protocol):
    """A legacy archive, searched and fetched from (``app.dimse.pull`` over DIMSE)."""

    async def find(self, level: PullLevel, keys: Mapping[str, str]) -> list[SourceUnit]:
        """The studies (or series) matching ``keys`` (keyword -> value, DICOM matching)."""
        ...

    async def instances(self, unit: SourceUnit) -> list[SourceInstance]:
        """Every instance of the unit at the source."""
        ...

    async def fetch(
        self,
        unit: SourceUnit,
        wanted: Sequence[SourceInstance],
        *,
        whole: bool,
        sink: InstanceSink,
    ) -> FetchOutcome:
        """Have the instances ``wanted`` (all of the unit when ``whole``) sent to us."""
        ...


#: makes the source a job pulls from (the entry points give one over DIMSE)
SourceFactory = Callable[[RemoteAe, PullMethod], PullSource]


@dataclass(frozen=True, slots=True)
class PullRequest:
    """A pull's parameters, validated (the job's ``parameters``, canonical)."""

    source: str
    query: tuple[tuple[str, str], ...] = ()
    level: PullLevel = PullLevel.STUDY
    method: PullMethod = PullMethod.GET

    @classmethod
    def parse(
        cls,
        source: object,
        query: Mapping[str, object] | Iterable[tuple[str, object]] = (),
        level: object = "STUDY",
        method: object = "get",
    ) -> "PullRequest":
        """Validate a request: 400 naming what is wrong."""
        if not isinstance(source, str) or not source.strip():
            raise BadRequest("a source AE title is required")
        try:
            unit_level = PullLevel(str(level).upper())
        except ValueError:
            raise BadRequest(f"invalid level {level!r}: STUDY or SERIES") from None
        try:
            how = PullMethod(str(method).lower())
        except ValueError:
            raise BadRequest(f"invalid method {method!r}: get or move") from None
        pairs = query.items() if isinstance(query, Mapping) else query
        keys: dict[str, str] = {}
        for name, value in pairs:
            keyword = _query_key(str(name), unit_level)
            if not isinstance(value, str):
                raise BadRequest(f"the value of {keyword} must be a string")
            if keyword in keys:
                raise BadRequest(f"{keyword} is given twice")
            keys[keyword] = value
        return cls(source.strip(), tuple(sorted(keys.items())), unit_level, how)

    def parameters(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "query": dict(self.query),
            "level": self.level.value,
            "method": self.method.value,
        }

    @classmethod
    def of(cls, parameters: Mapping[str, Any]) -> "PullRequest":
        return cls.parse(
            parameters.get("source"),
            parameters.get("query") or {},
            parameters.get("level", "STUDY"),
            parameters.get("method", "get"),
        )

    def keys_at(self, level: Level) -> dict[str, str]:
        """The query keys of ``level`` (patient keys go with the study's, Study Root)."""
        wanted = {Level.PATIENT, Level.STUDY} if level is Level.STUDY else {level}
        return {k: v for k, v in self.query if _level(k) in wanted}


def _level(keyword: str) -> Level | None:
    tag = parse_tag(keyword)
    return level_of(tag) if tag is not None else None


def _query_key(name: str, unit_level: PullLevel) -> str:
    """A matching key of the request, as its keyword; refused when unknown or at a level the
    search cannot use (PS3.4 §C.6.2.1: Study Root, hierarchical)."""
    tag = parse_tag(name.strip())
    if tag is None:
        raise BadRequest(
            f"unknown attribute {name!r} in the query (a DICOM keyword or 8 hex digits)"
        )
    keyword = keyword_of(tag)
    if keyword == "QueryRetrieveLevel":
        raise BadRequest("QueryRetrieveLevel is set by the level of the pull, not in the query")
    level = level_of(tag)
    if level in (Level.PATIENT, Level.STUDY):
        return keyword
    if level is Level.SERIES:
        if unit_level is PullLevel.SERIES:
            return keyword
        raise BadRequest(
            f"{keyword} is a series-level key: pull with level SERIES (or, for a modality, "
            "query ModalitiesInStudy)"
        )
    raise BadRequest(f"{keyword} is not a study or series matching key")


@dataclass(slots=True)
class PullReport:
    """The outcome of one run of a pull job (what this run did, and the job's state)."""

    job_id: str
    state: JobState
    reason: str | None
    progress: Progress
    #: instances received in this run, and their bytes
    fetched: int = 0
    fetched_bytes: int = 0
    #: units this run found held already (skipped)
    skipped: int = 0
    elapsed: float = 0.0
    failures: list[ItemRow] = field(default_factory=list)


#: called on every instance received and every unit finished (a progress display)
ProgressCallback = Callable[["PullProgress"], None]


@dataclass(slots=True)
class PullProgress:
    """What a display shows while a job runs."""

    units_total: int = 0
    units_finished: int = 0
    units_failed: int = 0
    instances_total: int = 0
    #: instances held, before this run or received in it
    instances_done: int = 0
    fetched: int = 0
    fetched_bytes: int = 0
    started: float = field(default_factory=time.monotonic)


class _Sink:
    """One unit's instances into an ingest session (:class:`InstanceSink`)."""

    def __init__(self, ingest: IngestService, session: IngestSession, run: "_Run") -> None:
        self._ingest = ingest
        self.session = session
        self._run = run
        self.received = 0
        self.bytes = 0

    def spool(self) -> Spool:
        return self._ingest.spool()

    async def accept(self, part: SpooledPart) -> None:
        self.received += 1
        self.bytes += part.size
        self._run.received(part.size)
        await self.session.add(part)


class _Run:
    """The state of one run of a job: its lease's counters and the display's."""

    def __init__(self, lease: JobLease, on_progress: ProgressCallback | None) -> None:
        self.lease = lease
        self.display = PullProgress()
        self._on_progress = on_progress

    @property
    def progress(self) -> Progress:
        return self.lease.progress

    def received(self, size: int) -> None:
        self.display.fetched += 1
        self.display.fetched_bytes += size
        self.display.instances_done += 1
        self.notify()

    def notify(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.display)

    def moved(self, previous: ItemRow, outcome: ItemRow) -> None:
        """A unit's row went from ``previous`` to ``outcome``: the counters follow."""
        p = self.progress
        p.instances_total += (outcome.expected or 0) - (previous.expected or 0)
        p.instances_stored += outcome.stored - previous.stored
        p.instances_held += outcome.held - previous.held
        p.instances_failed += outcome.failed - previous.failed
        p.bytes_stored += outcome.bytes - previous.bytes
        for state, delta in ((previous.state, -1), (outcome.state, 1)):
            if state == "done":
                p.units_done += delta
            elif state == "skipped":
                p.units_skipped += delta
            elif state == "failed":
                p.units_failed += delta
        d = self.display
        d.instances_total = p.instances_total
        d.units_finished += 1
        d.units_failed += outcome.state == "failed"
        d.instances_done += outcome.held  # held before: done without a transfer
        self.notify()

    def count(self, items: Sequence[ItemRow]) -> None:
        """Set the counters from the units' rows (a run starts from what the job holds)."""
        p = self.progress
        p.units_total = len(items)
        p.units_done = sum(i.state == "done" for i in items)
        p.units_skipped = sum(i.state == "skipped" for i in items)
        p.units_failed = sum(i.state == "failed" for i in items)
        p.instances_total = sum(i.expected or 0 for i in items)
        p.instances_stored = sum(i.stored for i in items)
        p.instances_held = sum(i.held for i in items)
        p.instances_failed = sum(i.failed for i in items)
        p.bytes_stored = sum(i.bytes for i in items)
        d = self.display
        d.units_total = p.units_total
        d.units_finished = p.units_done + p.units_skipped
        d.units_failed = 0
        d.instances_total = p.instances_total
        d.instances_done = p.instances_stored + p.instances_held


class PullService:
    """Pull jobs: start, run, resume."""

    def __init__(
        self,
        db: Database,
        ingest: IngestService,
        audit: AuditLog,
        aes: RemoteAeService,
        jobs: JobService,
        *,
        sources: SourceFactory | None = None,
        concurrency: int = 4,
    ) -> None:
        self._db = db
        self._ingest = ingest
        self._audit = audit
        self._aes = aes
        self._jobs = jobs
        #: plugged in by the entry points (``app.main``, ``app.cli``): the DIMSE side
        self.sources = sources
        self.concurrency = max(1, min(MAX_CONCURRENCY, concurrency))

    async def prepare(self, request: PullRequest, *, owner: str | None) -> Job:
        """The job for ``request``: the newest one made for the same request (to resume it),
        else a new one. 404 when the source AE is unknown, 409 when its job runs elsewhere."""
        await self._aes.require(request.source)
        existing = await self._jobs.find(KIND, request.parameters())
        if existing is not None:
            if existing.state is JobState.RUNNING:
                raise Conflict(
                    f"the job {existing.id} for this pull is running on {existing.row.runner}"
                )
            return existing
        return await self._jobs.create(KIND, request.parameters(), owner=owner)

    async def run(
        self,
        job_id: str,
        *,
        concurrency: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> PullReport:
        """Run (or resume) the job in this task until it ends; its report."""
        lease = await self._jobs.acquire(job_id)
        return await self._run_leased(lease, concurrency, on_progress)

    async def start(self, job_id: str, *, concurrency: int | None = None) -> Job:
        """Take the job's lease and run it in the background of this process (the REST job);
        409 when another runner holds it, 400 when it is no pull."""
        job = await self._jobs.get(job_id)
        if job.row.kind != KIND:
            raise BadRequest(f"the job {job_id} is a {job.row.kind} job, not a pull")
        if self.sources is None:
            raise Unavailable("this process has no DIMSE client to pull with")
        lease = await self._jobs.acquire(job_id)
        self._jobs.spawn(self._run_leased(lease, concurrency, None), name=f"pull-{job_id}")
        return await self._jobs.get(job_id)

    async def _run_leased(
        self, lease: JobLease, concurrency: int | None, on_progress: ProgressCallback | None
    ) -> PullReport:
        job = lease.job
        run = _Run(lease, on_progress)
        lease.on_beat = run.notify
        started = time.monotonic()
        skipped_here = 0
        owner = job.row.owner
        ae: RemoteAe | None = None
        try:
            async with lease:
                request = PullRequest.of(job.parameters)
                ae = await self._aes.require(request.source)
                await self._audit.record(
                    AuditRecord(
                        action="pull-start",
                        outcome=Outcome.SUCCESS,
                        actor=owner,
                        source=ae.address,
                        detail=f"job {job.id} from {ae.ae_title}: {_describe(request)}",
                    )
                )
                if self.sources is None:
                    raise Unavailable("this process has no DIMSE client to pull with")
                source = self.sources(ae, request.method)
                units = await _searched(source, request)
                await self._jobs.add_items(
                    job.id,
                    [
                        ItemRow(
                            u.key, u.study_uid, u.series_uid, u.patient_id, "pending", u.instances
                        )
                        for u in units
                    ],
                )
                items = await self._jobs.items(job.id)
                run.count(items)
                run.notify()
                todo = [i for i in items if i.state in ("pending", "failed")]
                skipped_here, stopped = await self._pull_units(
                    source, ae, run, todo, concurrency or self.concurrency, owner
                )
                p = run.progress
                if stopped:
                    lease.finish(JobState.CANCELLED, "cancelled on request")
                elif p.units_failed:
                    lease.finish(
                        JobState.FAILED,
                        f"{p.units_failed} of {p.units_total} "
                        f"{'series' if request.level is PullLevel.SERIES else 'studies'} failed",
                    )
                else:
                    lease.finish(JobState.COMPLETED)
        except LightboxError:
            pass  # the source failed, or the job could not start: the lease recorded why
        finally:
            final = await self._jobs.get(job.id)
            await self._audit.record(
                AuditRecord(
                    action="pull-finish",
                    outcome=Outcome.SUCCESS
                    if final.state is JobState.COMPLETED
                    else Outcome.FAILURE,
                    actor=owner,
                    source=ae.address if ae is not None else None,
                    count=run.display.fetched,
                    detail=f"job {job.id} {final.state.value}"
                    + (f": {final.row.reason}" if final.row.reason else ""),
                )
            )
        failures = await self._jobs.items(job.id, states=["failed"], limit=1000)
        return PullReport(
            job_id=job.id,
            state=final.state,
            reason=final.row.reason,
            progress=final.progress,
            fetched=run.display.fetched,
            fetched_bytes=run.display.fetched_bytes,
            skipped=skipped_here,
            elapsed=time.monotonic() - started,
            failures=failures,
        )

    async def _pull_units(
        self,
        source: PullSource,
        ae: RemoteAe,
        run: _Run,
        todo: Sequence[ItemRow],
        concurrency: int,
        owner: str | None,
    ) -> tuple[int, bool]:
        """Pull the units, ``concurrency`` at once, until done or cancelled; the units skipped,
        and whether a cancel stopped the run."""
        units = iter(todo)  # shared by the workers: each unit is taken by one
        skipped = 0

        async def worker() -> None:
            nonlocal skipped
            for item in units:
                if run.lease.cancelled.is_set():
                    return
                outcome = await self._pull_unit(source, ae, run, item, owner)
                skipped += outcome.state == "skipped"

        workers = [
            asyncio.create_task(worker(), name=f"pull-{run.lease.job.id}-{n}")
            for n in range(max(1, min(MAX_CONCURRENCY, concurrency, len(todo))))
        ]
        stop = asyncio.create_task(run.lease.cancelled.wait())
        try:
            pending: set[asyncio.Task[Any]] = set(workers)
            while pending:
                done, pending = await asyncio.wait(
                    pending | {stop}, return_when=asyncio.FIRST_COMPLETED
                )
                if stop in done or any(not t.cancelled() and t.exception() for t in done):
                    break
                pending.discard(stop)
        finally:
            stop.cancel()
            for task in workers:
                task.cancel()
            # every worker ends (a unit stopped mid-way commits what arrived) before the job
            # records its state (not gather: a cancelled gather returns before its children)
            if workers:
                await asyncio.wait(workers)
        if run.lease.cancelled.is_set():
            return skipped, True
        for task in workers:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
        return skipped, False

    async def _pull_unit(
        self,
        source: PullSource,
        ae: RemoteAe,
        run: _Run,
        item: ItemRow,
        owner: str | None,
    ) -> ItemRow:
        """One study (or series): list, compare with the index, fetch what is missing, check."""
        unit = SourceUnit(item.study_uid, item.series_uid, item.patient_id, item.expected)
        write = self._audit.for_write(actor=owner, source=ae.address)
        sink = _Sink(self._ingest, self._ingest.session(audit=write), run)
        try:
            listed = await source.instances(unit)
            held = await self._held([i.sop_uid for i in listed])
            missing = [i for i in listed if i.sop_uid not in held]
            stored, failed, error = 0, 0, None
            if missing:
                stored, error = await self._fetch(source, unit, missing, sink, whole=not held)
                failed = len(missing) - stored
                error = (
                    f"{failed} of {len(listed)} instances not received{error}" if failed else None
                )
            outcome = replace(
                item,
                state="failed" if failed else "done" if missing else "skipped",
                expected=len(listed),
                stored=item.stored + stored,
                # held before this job stored any of them (a resumed unit's earlier instances
                # are the job's, counted in stored)
                held=max(0, len(held) - item.stored),
                failed=failed,
                bytes=item.bytes + sink.bytes,
                error=error,
            )
        except SourceError as exc:  # the listing failed: nothing was asked for
            outcome = replace(item, state="failed", error=exc.message)
        except asyncio.CancelledError:
            await self._audit.record(
                AuditRecord(
                    action="pull-study",
                    outcome=Outcome.FAILURE,
                    actor=owner,
                    source=ae.address,
                    study_uid=item.study_uid,
                    series_uid=item.series_uid,
                    patient_id=item.patient_id,
                    count=sink.received,
                    detail=f"job {run.lease.job.id}: stopped mid-way",
                    supersedes=write.release(),
                )
            )
            raise
        await self._jobs.set_item(run.lease.job.id, outcome)
        run.moved(item, outcome)
        await self._audit.record(
            AuditRecord(
                action="pull-study",
                outcome=Outcome.FAILURE if outcome.state == "failed" else Outcome.SUCCESS,
                actor=owner,
                source=ae.address,
                study_uid=item.study_uid,
                series_uid=item.series_uid,
                patient_id=item.patient_id,
                count=outcome.stored - item.stored,
                detail=f"job {run.lease.job.id} from {ae.ae_title}: {outcome.state}"
                + (f": {outcome.error}" if outcome.error else ""),
                supersedes=write.release(),
            )
        )
        return outcome

    async def _fetch(
        self,
        source: PullSource,
        unit: SourceUnit,
        missing: Sequence[SourceInstance],
        sink: "_Sink",
        *,
        whole: bool,
    ) -> tuple[int, str]:
        """Fetch the instances ``missing`` into the unit's ingest session and check that the
        index holds them: how many it does, and why the others are not (": ..." or "")."""
        session = sink.session
        try:
            fetched = await source.fetch(unit, missing, whole=whole, sink=sink)
        except SourceError as exc:
            fetched = FetchOutcome(error=exc.message)  # what arrived before is kept
        except asyncio.CancelledError:
            # stopped mid-way: what arrived whole is committed all the same, so a resumed job
            # does not fetch it again
            try:
                await asyncio.shield(session.finish())
            except Exception:
                await session.abort()
            raise
        except BaseException:
            await session.abort()
            raise
        result = await session.finish()
        now_held = await self._held([i.sop_uid for i in missing])
        stored = sum(i.sop_uid in now_held for i in missing)
        if stored == len(missing):
            return stored, ""
        refused = [o.message for o in result.failed if o.message]
        if refused:  # ingest said why (a conflict, a SOP class not accepted ...)
            why = refused[0]
        elif fetched.error:
            why = fetched.error
        elif fetched.failed:
            why = f"the source reported {fetched.failed} failed sub-operations"
        else:
            why = "the source did not send them"
        status = f" (status 0x{fetched.status:04X})" if fetched.status else ""
        return stored, f"{status}: {why}"

    async def _held(self, sop_uids: Sequence[str]) -> set[str]:
        if not sop_uids:
            return set()
        async with self._db.read() as conn:
            return set(await InstanceIndex(conn).find_instances(sop_uids))


async def _searched(source: PullSource, request: PullRequest) -> list[SourceUnit]:
    """The units of the request at the source: its studies, or their series."""
    studies = await source.find(PullLevel.STUDY, request.keys_at(Level.STUDY))
    if request.level is PullLevel.STUDY:
        return studies
    series_keys = request.keys_at(Level.SERIES)
    units: list[SourceUnit] = []
    for study in studies:
        found = await source.find(
            PullLevel.SERIES, {**series_keys, "StudyInstanceUID": study.study_uid}
        )
        units += [
            SourceUnit(study.study_uid, s.series_uid, study.patient_id, s.instances) for s in found
        ]
    return units


def _describe(request: PullRequest) -> str:
    keys = " ".join(f"{k}={v}" for k, v in request.query) or "everything"
    return f"{keys} by {request.level.value.lower()} with C-{request.method.value.upper()}"

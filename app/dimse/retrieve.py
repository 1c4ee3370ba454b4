"""C-MOVE SCP and C-GET SCP, Patient Root and Study Root (PS3.4 §C.4.2, §C.4.3; DIMSE-11..13).

Both run on the retrieve service of WADO-RS (``app.services.retrieve``): the identifier is read
into a query (:func:`~app.dicom.dimse_query.parse_retrieve`), the query engine finds the
studies, series or instances it names (``QueryService.targets``), the retrieve service resolves
each (``RetrieveService.resolve``: the count of sub-operations, the SOP classes and stored
syntaxes) and then answers each with its instances
(``RetrieveService.instances(InstancesRequest(target, Accepted.contexts(...)))``), chosen
per instance for the presentation contexts the peer accepted: as stored when a context takes
the stored syntax, else transcoded to Explicit or Implicit VR Little Endian by the same
decoders WADO-RS uses, else left out, a failed sub-operation (DIMSE-12/13). Each instance is
one C-STORE sub-operation (:mod:`app.dimse.sender`); a Pending response with the counts follows
each (:mod:`app.dimse.suboperations`, which also says how counts above 65,535 are reported).

C-MOVE (synchronous: the final status comes when the last sub-operation is done)
    The Move Destination is looked up among the remote AEs (``services.aes``; unknown: 0xA801).
    One association is opened to it, proposing for every SOP class to be sent its stored
    syntaxes and the two uncompressed ones (:func:`~app.dimse.sender.propose_contexts`), as
    our AE title; each C-STORE carries the Move Originator AE Title and Message ID.

    A destination that refuses or drops the association costs the sub-operation under way,
    and the next one reconnects; one that keeps failing is given up and the sub-operations
    left fail at once, counted and listed (:mod:`app.dimse.destinations`).

C-GET
    The C-STOREs go on the requestor's association, on the storage contexts for which it took
    the SCP role (PS3.7 §D.3.3.4); an instance of a SOP class it did not negotiate is a failed
    sub-operation. If that association ends the operation ends with it.

A C-CANCEL is honoured between sub-operations (final 0xFE00 with the counts and Remaining).
Every operation is audited (DIMSE-14): one ``retrieve`` row per study touched, with the number
of its instances delivered, or one row for a refusal.
"""

import functools
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.dicom.dimse_query import SOP_CLASSES, InvalidIdentifier, RetrieveRequest, Service
from app.dicom.dimse_query import parse_retrieve as read_identifier
from app.dicom.part10 import NotPart10
from app.dicom.status import QueryRetrieveStatus
from app.dicom.target import Target
from app.dimse.audit import record
from app.dimse.context import DimseContext, Peer
from app.dimse.destinations import Destination, GetRequestor, MoveDestination, Outgoing
from app.dimse.sender import AssociationLost
from app.dimse.statuses import error_status, outcome_of, status_dataset
from app.dimse.suboperations import Counts, Exchange, Runner
from app.errors import Gone, LightboxError, NotAcceptable, NotFound
from app.services.aes import RemoteAe
from app.services.container import Services
from app.services.metrics import dimse_operation, status_category
from app.services.retrieve import Accepted, InstanceRef, InstancesRequest

__all__ = ["handle_get", "handle_move"]

log = logging.getLogger(__name__)


def handle_get(ctx: DimseContext, event: Any) -> Runner:
    """The ``evt.EVT_C_GET`` handler: the runner :class:`~app.dimse.suboperations.Exchange`
    calls with the request's responses."""
    return functools.partial(_retrieve, ctx, event, Service.GET)


def handle_move(ctx: DimseContext, event: Any) -> Runner:
    """The ``evt.EVT_C_MOVE`` handler (see :func:`handle_get`)."""
    return functools.partial(_retrieve, ctx, event, Service.MOVE)


@dataclass(frozen=True, slots=True)
class _Job:
    """A target to send: its number of instances when counted, and its instances themselves
    once known (a target split after a dropped association)."""

    target: Target
    count: int
    refs: tuple[InstanceRef, ...] | None = None


@dataclass(slots=True)
class _Plan:
    """What one retrieve sends: the targets and their instance counts, and the (SOP class,
    stored syntax) pairs among them (the C-MOVE contexts). The instances themselves are not
    kept: a patient of a million instances is planned in the memory of its counts."""

    jobs: list[_Job]
    pairs: Counter[tuple[str, str]]

    @property
    def total(self) -> int:
        return sum(job.count for job in self.jobs)


async def _plan(services: Services, request: RetrieveRequest) -> _Plan:
    jobs: list[_Job] = []
    pairs: Counter[tuple[str, str]] = Counter()
    for target in await services.query.targets(request.query):
        try:
            refs = await services.retrieve.resolve(target)
        except (NotFound, Gone):
            continue  # deleted since the search: nothing to send
        jobs.append(_Job(target, len(refs)))
        pairs.update((ref.sop_class_uid, ref.transfer_syntax_uid) for ref in refs)
    return _Plan(jobs, pairs)


@dataclass(slots=True)
class _Tally:
    """Per study: instances delivered and failed (the audit rows)."""

    delivered: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)

    def count(self, study_uid: str, delivered: bool) -> None:
        book = self.delivered if delivered else self.failed
        book[study_uid] = book.get(study_uid, 0) + 1


def _retrieve(ctx: DimseContext, event: Any, service: Service, exchange: Exchange) -> None:
    model, _ = SOP_CLASSES[str(event.context.abstract_syntax)]
    started = time.monotonic()
    what = f"{service} {model}"
    try:
        request = read_identifier(event.identifier, model)
    except Exception as exc:
        if not isinstance(exc, InvalidIdentifier):
            exc = InvalidIdentifier("the identifier cannot be decoded")
        refusal = error_status(exc, operation=str(service))
        exchange.refuse(refusal)
        _refused(ctx, event, service, int(refusal.Status), f"{what}: {exc}", started)
        return
    what = f"{what} {request.level.value}"
    destination: RemoteAe | None = None
    if service is Service.MOVE:
        title = event.move_destination or ""
        destination = ctx.bridge.run(ctx.services.aes.get(title)) if title else None
        if destination is None:
            status = QueryRetrieveStatus.MOVE_DESTINATION_UNKNOWN
            exchange.refuse(status_dataset(status, f"unknown Move Destination {title[:24]!r}"))
            _refused(ctx, event, service, status, f"{what}: unknown destination {title!r}", started)
            return
        what = f"{what} to {destination.ae_title}"
    try:
        plan = ctx.bridge.run(_plan(ctx.services, request))
    except Exception as exc:
        refusal = error_status(exc, operation=str(service))
        if isinstance(exc, LightboxError) and not isinstance(exc, InvalidIdentifier):
            refusal.Status = QueryRetrieveStatus.UNABLE_TO_CALCULATE_MATCHES
        exchange.refuse(refusal)
        _refused(ctx, event, service, int(refusal.Status), f"{what}: {exc}", started)
        return
    counts = Counts(remaining=plan.total)
    tally = _Tally()
    store: Destination
    if destination is None:
        store = GetRequestor(exchange.assoc, exchange.request.MessageID or 0)
    else:
        requestor = Peer.of(event).ae_title
        originator = (requestor, exchange.request.MessageID or 0)
        store = MoveDestination(ctx, destination, plan.pairs.elements(), originator)
    try:
        _run(ctx, exchange, plan, store, counts, tally)
    finally:
        store.close()
    final = counts.final_status(exchange.cancelled())
    exchange.final(counts, final)
    took = time.monotonic() - started
    dimse_operation(str(service), status_category(int(final)), took)
    _audit(ctx, event, final, what, counts, tally, took)


class _Dropped(Exception):
    """The association the C-STOREs went on ended during a target's sub-operations."""

    def __init__(self, refs: Sequence[InstanceRef], handled: set[str]) -> None:
        super().__init__("association lost")
        self.refs = refs
        self.handled = handled


def _instance_jobs(refs: Iterable[InstanceRef]) -> list[_Job]:
    return [_Job(Target(r.study_uid, r.series_uid, r.sop_uid), 1, (r,)) for r in refs]


def _resolved(ctx: DimseContext, job: _Job) -> tuple[InstanceRef, ...]:
    """A job's instances: as known, else resolved now (none if deleted since counted)."""
    if job.refs is not None:
        return job.refs
    try:
        return tuple(ctx.bridge.run(ctx.services.retrieve.resolve(job.target)))
    except (NotFound, Gone):
        return ()


def _run(
    ctx: DimseContext,
    exchange: Exchange,
    plan: _Plan,
    store: Destination,
    counts: Counts,
    tally: _Tally,
) -> None:
    """The sub-operations, target after target, until done, cancelled or the requestor gone.

    After a C-MOVE destination dropped the association the rest of that target goes instance
    by instance on the next one (each still through the retrieve service)."""
    jobs = deque(plan.jobs)

    def fail(refs: Iterable[InstanceRef]) -> None:
        for ref in refs:
            counts.fail(ref.sop_uid)
            tally.count(ref.study_uid, delivered=False)
        exchange.pending(counts)

    while jobs:
        if exchange.cancelled() or not exchange.alive:
            return
        job = jobs.popleft()
        if not store.connect():
            refs = _resolved(ctx, job)
            _settle(counts, job, refs)
            if store.given_up:  # every sub-operation left fails at once
                later = [(j, _resolved(ctx, j)) for j in jobs]
                for later_job, later_refs in later:
                    _settle(counts, later_job, later_refs)
                fail([*refs, *(ref for _, found in later for ref in found)])
                return
            fail(refs[:1])  # the sub-operation under way; the next one reconnects
            jobs.extendleft(reversed(_instance_jobs(refs[1:])))
            continue
        try:
            _send_target(ctx, exchange, store, job, counts, tally)
        except _Dropped as dropped:
            if isinstance(store, GetRequestor):
                return  # the requestor's own association: nothing more can be sent
            unsent = [ref for ref in dropped.refs if ref.sop_uid not in dropped.handled]
            jobs.extendleft(reversed(_instance_jobs(unsent)))


def _settle(counts: Counts, job: _Job, refs: Sequence[InstanceRef]) -> None:
    """Instances counted before the send that are no longer there (deleted meanwhile) are no
    longer remaining."""
    counts.remaining = max(0, counts.remaining - (job.count - len(refs)))


def _send_target(
    ctx: DimseContext,
    exchange: Exchange,
    store: Destination,
    job: _Job,
    counts: Counts,
    tally: _Tally,
) -> None:
    """One target's instances, from the retrieve service, each a sub-operation."""
    refs = _resolved(ctx, job)
    _settle(counts, job, refs)
    if not refs:
        return
    accepted = Accepted.contexts(store.contexts())
    try:
        answer = ctx.bridge.run(
            ctx.services.retrieve.instances(InstancesRequest(job.target, accepted))
        )
    except (NotAcceptable, NotFound, Gone) as exc:
        # no context carries any of them, or they were deleted since they were counted
        log.info("%s: %s", job.target, exc.message)
        for ref in refs:
            counts.fail(ref.sop_uid)
            tally.count(ref.study_uid, delivered=False)
        exchange.pending(counts)
        return
    classes = {ref.sop_uid: ref.sop_class_uid for ref in refs}
    handled: set[str] = set()
    for left_out in answer.left_out:
        handled.add(str(left_out.sop_uid))
        counts.fail(str(left_out.sop_uid))
        tally.count(left_out.study_uid, delivered=False)
    if answer.left_out:
        exchange.pending(counts)
    parts = ctx.bridge.iterate(answer.parts)
    try:
        for part in parts:
            if exchange.cancelled() or not exchange.alive:
                return
            instance = part.head.instance
            sop_uid = str(instance.sop_uid)
            handled.add(sop_uid)
            if part.failure is not None:
                log.warning("%s not sent: %s", sop_uid, part.failure)
                counts.fail(sop_uid)
                tally.count(instance.study_uid, delivered=False)
                exchange.pending(counts)
                continue
            chunks = ctx.bridge.iterate(part.chunks)
            try:
                status = store.send(Outgoing(classes.get(sop_uid, ""), sop_uid), chunks)
            except (AssociationLost, NotPart10) as exc:
                log.warning("C-STORE of %s failed: %s", sop_uid, exc)
                counts.fail(sop_uid)
                tally.count(instance.study_uid, delivered=False)
                exchange.pending(counts)
                if isinstance(exc, AssociationLost):
                    raise _Dropped(refs, handled) from exc
                continue
            finally:
                chunks.close()
            tally.count(instance.study_uid, delivered=counts.done(status, sop_uid))
            exchange.pending(counts)
    finally:
        parts.close()
    # resolved a moment ago, gone from the answer (deleted in between): no longer remaining
    counts.remaining = max(0, counts.remaining - (len(refs) - len(handled)))


def _audit(
    ctx: DimseContext,
    event: Any,
    status: int,
    what: str,
    counts: Counts,
    tally: _Tally,
    took: float,
) -> None:
    """One ``retrieve`` row per study touched (DIMSE-14), with its instances delivered."""
    summary = (
        f"{what} ({took:.1f} s): {counts.completed} completed, {counts.warning} warning, "
        f"{counts.failed} failed"
    )
    studies = list(dict.fromkeys([*tally.delivered, *tally.failed]))
    if not studies:
        _audit_refusal(ctx, event, status, summary)
        return
    for study_uid in studies:
        delivered, failed = tally.delivered.get(study_uid, 0), tally.failed.get(study_uid, 0)
        record(
            ctx,
            event,
            "retrieve",
            outcome_of(status),
            status=int(status),
            study_uid=study_uid,
            count=delivered,
            detail=f"{summary}; this study: {delivered} delivered, {failed} failed",
        )


def _refused(
    ctx: DimseContext, event: Any, service: Service, status: int, detail: str, started: float
) -> None:
    """A retrieve refused before its sub-operations: counted and audited."""
    dimse_operation(str(service), status_category(status), time.monotonic() - started)
    _audit_refusal(ctx, event, status, detail)


def _audit_refusal(ctx: DimseContext, event: Any, status: int, detail: str) -> None:
    record(ctx, event, "retrieve", outcome_of(status), status=int(status), count=0, detail=detail)

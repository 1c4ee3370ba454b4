"""Storage Commitment Push Model SCP (PS3.4 Annex J, DIMSE-06): N-ACTION in, N-EVENT-REPORT out.

A modality asks, by N-ACTION (Action Type 1) on the well-known SOP instance
1.2.840.10008.1.20.1.1, whether Lightbox has safely stored a list of instances; it often deletes
its own copies on the answer. The N-ACTION is answered at once (the request is taken), and the
verdict follows as an N-EVENT-REPORT (Event Type 1: all committed; 2: some failed, each with its
Failure Reason), once :class:`~app.services.commitment.CommitmentService` has checked every
instance against the index and re-hashed its blob.

The report goes on the same association when the modality still holds it open (a second after
its request, when its release would have come); when it has released it (many do, and wait for
the report on an association of ours), on a new association
to the address configured for its AE title (``Services.aes``: ``dimse.remote_aes`` or the AE
registry), proposing the SCP role for Storage Commitment (PS3.4 J.3.3, PS3.7 D.3.3.4). A report
that cannot be delivered is audited as a failure (the modality will ask again).

The verification and the report run in a thread of their own: the N-ACTION's answer must be
sent first, and pynetdicom sends an acceptor's N-EVENT-REPORT by pausing the association's
reactor, which it can only do from another thread.
"""

import logging
import threading
import time
from typing import Any, Final

from pydicom.dataset import Dataset
from pynetdicom.pdu_primitives import A_RELEASE
from pynetdicom.presentation import build_role

from app.dicom.uids import is_valid_uid
from app.dimse.audit import record
from app.dimse.context import DimseContext, Peer
from app.dimse.contexts import COMMITMENT
from app.dimse.requestor import associate
from app.services.audit import Outcome
from app.services.commitment import Reference, Verdict

__all__ = ["handle_action"]

log = logging.getLogger(__name__)

#: the well-known SOP instance of Storage Commitment Push Model (PS3.4 J.3.1)
COMMITMENT_INSTANCE: Final = "1.2.840.10008.1.20.1.1"
#: Action Type ID of "Request Storage Commitment" (PS3.4 Table J.3-1)
REQUEST_COMMITMENT: Final = 1
#: Event Type IDs (PS3.4 Table J.3-2): all committed, some failed
ALL_COMMITTED: Final = 1
SOME_FAILED: Final = 2
_PLAIN: Final = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
#: seconds the modality has to answer a report on its own association
SAME_ASSOCIATION_WAIT: Final = 10.0
#: seconds after its N-ACTION during which a modality releasing its association is expected to
#: have done so (then the report goes on a new association)
RELEASE_GRACE: Final = 1.0

# N-ACTION statuses (PS3.7 Annex C)
_SUCCESS, _NO_SUCH_INSTANCE, _INVALID_ARGUMENT = 0x0000, 0x0112, 0x0115
_MISSING_ATTRIBUTE, _NO_SUCH_ACTION, _PROCESSING_FAILURE = 0x0120, 0x0123, 0x0110


def handle_action(ctx: DimseContext, event: Any) -> tuple[int, Dataset | None]:
    """``EVT_N_ACTION``: take a commitment request; the report follows (N-EVENT-REPORT)."""
    request = event.request
    if str(request.RequestedSOPClassUID or "") != COMMITMENT:
        return _refused(ctx, event, _NO_SUCH_INSTANCE, "not a Storage Commitment request")
    if str(request.RequestedSOPInstanceUID or "") != COMMITMENT_INSTANCE:
        return _refused(ctx, event, _NO_SUCH_INSTANCE, "not the well-known SOP instance")
    if request.ActionTypeID != REQUEST_COMMITMENT:
        return _refused(ctx, event, _NO_SUCH_ACTION, "unknown Action Type ID")
    try:
        information = event.action_information
        transaction = str(information.get("TransactionUID", "") or "")
        items = information.get("ReferencedSOPSequence")
        if items is None:
            return _refused(ctx, event, _MISSING_ATTRIBUTE, "no Referenced SOP Sequence")
        references = [
            Reference(
                str(item.get("ReferencedSOPClassUID", "") or ""),
                str(item.get("ReferencedSOPInstanceUID", "") or ""),
            )
            for item in items
        ]
    except Exception:  # an undecodable Action Information
        log.info("undecodable Storage Commitment request", exc_info=True)
        return _refused(ctx, event, _PROCESSING_FAILURE, "Action Information not readable")
    if not is_valid_uid(transaction):
        return _refused(ctx, event, _INVALID_ARGUMENT, "missing or invalid Transaction UID")
    if not references:
        return _refused(ctx, event, _INVALID_ARGUMENT, "empty Referenced SOP Sequence")
    threading.Thread(
        target=_verify_and_report,
        args=(ctx, event, transaction, references, time.monotonic()),
        name="dimse-commitment",
        daemon=True,
    ).start()
    return _SUCCESS, None


def _refused(ctx: DimseContext, event: Any, status: int, why: str) -> tuple[int, None]:
    record(ctx, event, "commitment", Outcome.FAILURE, status=status, detail=f"refused: {why}")
    return status, None


def _verify_and_report(
    ctx: DimseContext, event: Any, transaction: str, references: list[Reference], asked: float
) -> None:
    try:
        verdict = ctx.bridge.run(ctx.services.commitment.verify(references))
    except Exception:
        log.exception("storage commitment could not be verified")
        record(ctx, event, "commitment", Outcome.FAILURE, detail="verification failed")
        return
    _wait_for_release(event.assoc, asked + RELEASE_GRACE)
    report = _report(ctx, transaction, verdict)
    event_type = ALL_COMMITTED if not verdict.failed else SOME_FAILED
    how = _send(ctx, event, report, event_type)
    studies, patients = verdict.study_uids, verdict.patient_ids
    record(
        ctx,
        event,
        "commitment",
        Outcome.SUCCESS if how and not verdict.failed else Outcome.FAILURE,
        status=event_type,
        study_uid=next(iter(studies)) if len(studies) == 1 else None,
        patient_id=next(iter(patients)) if len(patients) == 1 else None,
        count=len(verdict.committed),
        detail=f"{len(verdict.committed)} committed, {len(verdict.failed)} failed; "
        + (f"reported on {how}" if how else "the report could not be delivered"),
    )


def _wait_for_release(assoc: Any, until: float) -> None:
    """Give a modality that releases right after the N-ACTION answer the time to do so: a
    report sent on an association being released is never answered (and waited for)."""
    while time.monotonic() < until and assoc.is_established and not _release_pending(assoc):
        time.sleep(0.02)


def _release_pending(assoc: Any) -> bool:
    """Whether the peer's A-RELEASE-RQ waits in the association's DUL queue."""
    return isinstance(assoc.dul.peek_next_pdu(), A_RELEASE)


def _report(ctx: DimseContext, transaction: str, verdict: Verdict) -> Dataset:
    """The Event Information (PS3.4 Table J.3-2)."""
    report = Dataset()
    report.TransactionUID = transaction
    report.RetrieveAETitle = ctx.settings.dimse.ae_title
    if verdict.committed:
        report.ReferencedSOPSequence = [_item(r) for r in verdict.committed]
    if verdict.failed:
        failed = []
        for reference, reason in verdict.failed:
            item = _item(reference)
            item.FailureReason = int(reason)
            failed.append(item)
        report.FailedSOPSequence = failed
    return report


def _item(reference: Reference) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = reference.sop_class_uid
    item.ReferencedSOPInstanceUID = reference.sop_uid
    return item


def _send(ctx: DimseContext, event: Any, report: Dataset, event_type: int) -> str | None:
    """Send the report; how it went ("the same association", "a new association") or None."""
    assoc = event.assoc
    # a modality that releases right after the N-ACTION answer may already have asked to
    # (its A-RELEASE-RQ waits in the DUL's queue): then the report goes on a new association
    if assoc.is_established and not _release_pending(assoc):
        # should the release come in the meantime, the report is not answered: do not wait a
        # whole DIMSE timeout for that
        saved = assoc.dimse_timeout
        assoc.dimse_timeout = min(saved or SAME_ASSOCIATION_WAIT, SAME_ASSOCIATION_WAIT)
        try:
            status, _ = assoc.send_n_event_report(
                report, event_type, COMMITMENT, COMMITMENT_INSTANCE
            )
            if "Status" in status:
                return "the same association"
        except (RuntimeError, ValueError, OSError) as exc:  # released meanwhile
            log.info("commitment report not sent on the request's association: %s", exc)
        finally:
            assoc.dimse_timeout = saved
    return _send_on_new_association(ctx, event, report, event_type)


def _send_on_new_association(
    ctx: DimseContext, event: Any, report: Dataset, event_type: int
) -> str | None:
    title = Peer.of(event).ae_title
    remote = ctx.bridge.run(ctx.services.aes.get(title))
    if remote is None:
        log.warning("no address known for AE %r: its commitment report cannot be sent", title)
        return None
    assoc = associate(
        ctx.settings.dimse,
        remote,
        [(COMMITMENT, _PLAIN)],
        # we invoke N-EVENT-REPORT, as the SCP of Storage Commitment (PS3.4 J.3.3)
        ext_neg=[build_role(COMMITMENT, scp_role=True)],
    )
    if not assoc.is_established:
        log.warning("AE %r refused the association for its commitment report", title)
        return None
    try:
        status, _ = assoc.send_n_event_report(report, event_type, COMMITMENT, COMMITMENT_INSTANCE)
        delivered = "Status" in status  # an empty status: no answer (aborted, timed out)
    finally:
        assoc.release()
    return "a new association" if delivered else None

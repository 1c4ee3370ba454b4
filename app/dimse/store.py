"""C-STORE SCP (PS3.4 Annex B, DIMSE-03..05): every storage SOP class, stored byte for byte as
received, answered only after the durable commit, on the STOW-RS ingest path.

For each C-STORE the handler

1. checks the command's Affected SOP Class and Instance UIDs (PS3.5 §9.1: a malformed one, or one
   built to escape a path, is refused 0xC000 before anything is written);
2. streams the data set from pynetdicom's receive file (:mod:`app.dimse.receive`) into the ingest
   spool behind a PS3.10 File Meta of ours (preamble, group 0002 naming the command's SOP class
   and instance, the negotiated transfer syntax, our implementation UID, the calling AE title):
   the data set's bytes are the peer's, untouched;
3. parses it there, in the association's thread, and fsyncs the spooled file
   (:meth:`~app.services.group_commit.GroupCommit.prepare`: no hop to a worker thread and back),
   then hands it to the group commit (:class:`~app.services.group_commit.GroupCommit`) in the
   services' loop, which applies the same policies as STOW-RS (duplicates, patient conflicts,
   SOP class allow-list, size limits), renames the blob into place, and commits the index rows
   (with this C-STORE's audit row) in a transaction shared with the C-STOREs of other
   associations;
4. answers with the instance's status, and queues the operation's audit row.

Statuses (PS3.4 Table B.2-1, PS3.7 Annex C): 0x0000 stored; 0xB000 stored with coercion (the
``overwrite`` duplicate policy replaced an instance, or the ``accept`` patient-conflict policy
took it); 0xA700 out of resources (the index or the object store failed, the instance is too
large); 0xA900 the data set is not what the command announced (its SOP Class or Instance UID
differs from the Affected one); 0xC000 cannot understand (truncated or unparseable data set, bad
UIDs), 0xC122 an unknown transfer syntax; 0x0122 SOP class refused by the allow-list; 0x0111 a
different object under a stored SOP Instance UID (``reject`` policy); 0x0110 processing failure
(the study or series is held under another patient or study). Failures carry an Error Comment.
"""

import logging
from pathlib import Path
from typing import Any, Final

from pydicom.dataset import Dataset

from app.dicom.filemeta import part10_header
from app.dicom.status import Status
from app.dicom.uids import is_valid_uid
from app.dimse.audit import peer_row, request_id, write_audit
from app.dimse.bridge import BridgeClosed
from app.dimse.context import DimseContext, Peer
from app.errors import InstanceRejected, InvalidInstance, OutOfResources
from app.services.audit import AuditRecord, Outcome
from app.services.group_commit import Announced
from app.services.ingest import IngestService, InstanceOutcome
from app.services.spool import SpooledPart

__all__ = ["error_comment", "file_meta", "handle_store", "status_of", "store_row"]

log = logging.getLogger(__name__)

#: bytes read from the receive file at a time
_COPY_CHUNK: Final = 1 << 20
#: what pynetdicom writes before the File Meta group: preamble and "DICM"
_PREFIX: Final = 132
#: (0002,0000) UL: tag, VR, length, value
_GROUP_LENGTH: Final = 12
#: the printable default repertoire without backslash (PS3.5 AE VR)
_AE_CHARS: Final = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"\\"}


def handle_store(ctx: DimseContext, event: Any) -> Dataset:
    """``EVT_C_STORE``: store the data set; the response's Status (and Error Comment)."""
    request = event.request
    sop_class = str(request.AffectedSOPClassUID or "")
    sop_uid = str(request.AffectedSOPInstanceUID or "")
    announced = Announced(sop_class, sop_uid)
    if not (is_valid_uid(sop_class) and is_valid_uid(sop_uid)):
        outcome = InstanceOutcome(None, None).refuse(
            InvalidInstance("the Affected SOP Class or Instance UID is not a valid UID")
        )
        return _answer(ctx, event, outcome)
    try:
        part = _spooled(ctx, event, announced)
    except InstanceRejected as exc:  # larger than the instance limit
        return _answer(ctx, event, InstanceOutcome(sop_class, sop_uid).refuse(exc))
    except (OSError, ValueError) as exc:
        log.error("C-STORE data set could not be spooled: %s", exc)
        outcome = InstanceOutcome(sop_class, sop_uid).refuse(
            OutOfResources("the data set could not be received")
        )
        return _answer(ctx, event, outcome)
    write = write_audit(ctx, event)
    services = ctx.services
    # parsed here, in the association's thread (the blob's fsync too): no hop to a worker thread
    prepared = services.group_commit.prepare(part, announced=announced, audit=write)

    async def store() -> InstanceOutcome:
        # one hop into the services loop: the commit, then this operation's audit row
        outcome = await services.group_commit.submit(prepared)
        if write is not None:
            try:  # stands for the journal row committed with the instance
                row = _audit_row(event, outcome, supersedes=write.release())
                await services.audit.record(row)
            except Exception:
                log.exception("could not queue the audit row of a C-STORE")
        return outcome

    try:
        outcome = ctx.bridge.run(store())
    except BridgeClosed:
        part.discard()
        outcome = InstanceOutcome(sop_class, sop_uid).refuse(
            OutOfResources("the server is shutting down")
        )
        return _answer(ctx, event, outcome)
    except Exception:
        log.exception("C-STORE failed")
        part.discard()
        outcome = InstanceOutcome(sop_class, sop_uid).refuse(
            OutOfResources("the instance could not be stored")
        )
        return _answer(ctx, event, outcome)
    return _response(outcome)


def _spooled(ctx: DimseContext, event: Any, announced: Announced) -> SpooledPart:
    """Our File Meta, then the data set as received, into the ingest spool (hashed)."""
    path: Path = event.dataset_path
    header = file_meta(announced, str(event.context.transfer_syntax), Peer.of(event).ae_title)
    ingest: IngestService = ctx.services.ingest
    spool = ingest.spool()
    try:
        with path.open("rb", buffering=0) as received:
            head = received.read(_PREFIX + _GROUP_LENGTH)
            if head[128:132] != b"DICM" or head[132:138] != b"\x02\x00\x00\x00UL":
                raise ValueError("unexpected layout of pynetdicom's receive file")
            received.seek(_PREFIX + _GROUP_LENGTH + int.from_bytes(head[140:144], "little"))
            spool.write(header)
            buffer = bytearray(_COPY_CHUNK)
            view = memoryview(buffer)
            while size := received.readinto(buffer):
                spool.write(view[:size])
        return spool.finish()
    except BaseException:
        spool.discard()
        raise


def file_meta(announced: Announced, transfer_syntax: str, calling_ae: str) -> bytes:
    """The preamble and File Meta group written before a received data set: the command's SOP
    Class and Instance UIDs (valid ones), the negotiated syntax, the calling AE title as Source
    Application Entity Title when it is a valid AE value."""
    return part10_header(
        announced.sop_class_uid,
        announced.sop_uid,
        transfer_syntax,
        calling_ae if calling_ae and set(calling_ae) <= _AE_CHARS else None,
    )


def status_of(outcome: InstanceOutcome) -> int:
    """The C-STORE response's Status for ``outcome``."""
    if outcome.stored:
        return int(outcome.warning if outcome.warning is not None else Status.SUCCESS)
    return int(outcome.failure if outcome.failure is not None else Status.OUT_OF_RESOURCES)


def _response(outcome: InstanceOutcome) -> Dataset:
    """The C-STORE response's Status, and an Error Comment for a failure."""
    response = Dataset()
    response.Status = status_of(outcome)
    comment = error_comment(outcome)
    if comment is not None:
        response.ErrorComment = comment
    return response


def error_comment(outcome: InstanceOutcome) -> str | None:
    """A failure's Error Comment (None for a success); the failure is logged."""
    if outcome.stored:
        return None
    log.info("C-STORE failure 0x%04X: %s", status_of(outcome), outcome.message)
    # LO: 64 characters; our messages name no attribute values (no PHI)
    return (outcome.message or "failed")[:64]


def _audit_row(event: Any, outcome: InstanceOutcome, **fields: Any) -> AuditRecord:
    fields.setdefault("request_id", request_id(event))
    return store_row(Peer.of(event), outcome, **fields)


def store_row(peer: Peer, outcome: InstanceOutcome, **fields: Any) -> AuditRecord:
    """The audit row of a C-STORE by ``peer`` (``request_id`` among ``fields``)."""
    status = status_of(outcome)
    return peer_row(
        peer,
        "store",
        Outcome.SUCCESS if outcome.stored else Outcome.FAILURE,
        status=status,
        study_uid=outcome.study_uid,
        series_uid=outcome.series_uid,
        instance_uid=outcome.sop_uid,
        patient_id=outcome.patient_id,
        count=1 if outcome.stored else 0,
        detail=f"C-STORE 0x{status:04X}" + ("" if outcome.stored else f": {outcome.message}"),
        **fields,
    )


def _answer(ctx: DimseContext, event: Any, outcome: InstanceOutcome) -> Dataset:
    """The response to a C-STORE refused before its commit, and its audit row."""
    if ctx.settings.auth.audit_enabled:
        try:
            ctx.bridge.run(ctx.services.audit.record(_audit_row(event, outcome)))
        except BridgeClosed:
            log.warning("C-STORE refused while shutting down: not audited")
        except Exception:
            log.exception("could not queue the audit row of a C-STORE")
    return _response(outcome)

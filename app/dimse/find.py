"""C-FIND SCP, Patient Root and Study Root, every level (PS3.4 §C.4.1; DIMSE-07..10).

The handler is thin: the identifier is read into the query QIDO-RS runs
(:func:`~app.dicom.dimse_query.parse_find`), one service call streams the matches
(:meth:`QueryService.find <app.services.query.QueryService.find>`, page by page, through the
bridge), and each match goes out as a Pending response carrying the requested keys, encoded
from the stored DICOM JSON (:func:`~app.dicom.dimse_query.match_identifier`);
:class:`~app.dimse.qr_service.QueryRetrieveService` sends them, and the final Success when the
generator ends.

Statuses (PS3.4 Table C.4-1): 0xFF00 per match, 0xFF01 when optional keys were not supported;
0x0000 at the end; 0xFE00 after a C-CANCEL (checked before each match is sent: the search stops
and its database cursor is released); 0xA900 for an identifier that does not fit the model
(level, key at a wrong level, missing unique key), 0xC000 for values that cannot be matched
or decoded, 0xA700 when the index is unavailable, each with an ErrorComment.

This is pynetdicom's path; an association the front door serves on the event loop answers its
C-FINDs in :mod:`app.dimse.loop_find`, with this module's :func:`read_request` and audit row.
"""

import logging
import time
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset

from app.dicom.dimse_query import (
    SOP_CLASSES,
    FindRequest,
    InvalidIdentifier,
    Model,
    match_identifier,
)
from app.dicom.dimse_query import parse_find as read_identifier
from app.dicom.status import QueryRetrieveStatus
from app.dimse.audit import peer_row, request_id
from app.dimse.context import DimseContext, Peer
from app.dimse.statuses import error_status, outcome_of
from app.services.audit import AuditRecord
from app.services.metrics import dimse_operation, status_category

__all__ = ["MAX_DETAIL", "handle_find", "read_request", "search_detail", "search_row"]

log = logging.getLogger(__name__)

#: what the handler yields: a status (with its ErrorComment: a status data set) and, for a
#: match, its identifier already encoded (``app.dimse.qr_service`` sends it as it is)
Response = tuple[int | Dataset, bytes | None]
#: matches taken from the services thread per hop: the responses of a page then go out back to
#: back, and pynetdicom's sender thread, which naps 1 ms whenever it finds nothing to send,
#: naps once per batch rather than once per match (1.5-2 ms a match before, 200 matches)
BATCH = 64
#: the longest detail an audit row keeps (the keys of a search can be long)
MAX_DETAIL = 1024


def handle_find(ctx: DimseContext, event: Any) -> Iterator[Response]:
    """The ``evt.EVT_C_FIND`` handler (registered as ``(evt.EVT_C_FIND, handle_find)``)."""
    model, _ = SOP_CLASSES[str(event.context.abstract_syntax)]
    started = time.perf_counter()
    try:
        request = read_request(event.identifier, model)
    except InvalidIdentifier as exc:
        status = error_status(exc, operation="C-FIND")
        _finish(ctx, event, int(status.Status), f"C-FIND {model}: {exc}", None, 0, started)
        yield status, None
        return
    matches = ctx.bridge.iterate(
        ctx.services.query.find(request.query, ctx.settings.public_base_url or ""), batch=BATCH
    )
    ae_title = ctx.settings.dimse.ae_title
    syntax = str(event.context.transfer_syntax)
    count = 0
    final: int = QueryRetrieveStatus.SUCCESS
    try:
        for obj in matches:
            if event.is_cancelled:  # PS3.4 §C.4.1.2.3: stop, answer Cancel
                final = QueryRetrieveStatus.CANCEL
                yield final, None
                return
            yield request.pending_status, match_identifier(obj, request, ae_title, syntax)
            count += 1
    except Exception as exc:
        failure = error_status(exc, operation="C-FIND")
        final = int(failure.Status)
        yield failure, None
    finally:
        matches.close()
        detail = search_detail(request, time.perf_counter() - started)
        _finish(ctx, event, final, detail, request, count, started)


def read_request(identifier: Dataset, model: Model) -> FindRequest:
    """The identifier read into the query QIDO-RS runs; :class:`InvalidIdentifier` for one that
    does not fit the model or cannot be decoded (an undecodable identifier fails on first access
    to a value, inside the parse)."""
    try:
        return read_identifier(identifier, model)
    except InvalidIdentifier:
        raise
    except Exception:
        raise InvalidIdentifier("the identifier cannot be decoded") from None


def search_detail(request: FindRequest, took: float) -> str:
    """The audit row's detail: the model, level, duration and match keys of the search."""
    keys = ", ".join(f"{name}={matcher}" for name, matcher in request.query.filters.items())
    unsupported = (
        f"; unsupported keys: {', '.join(request.unsupported)}" if request.unsupported else ""
    )
    return (
        f"C-FIND {request.model} {request.level.value} ({took * 1000:.0f} ms): "
        f"{keys or 'no match keys'}{unsupported}"
    )


def search_row(
    peer: Peer,
    request_id: str,
    status: int,
    detail: str,
    request: FindRequest | None,
    count: int,
) -> AuditRecord:
    """One ``search`` row (DIMSE-14): the PatientID or StudyInstanceUID asked for when one was,
    the number of matches sent, the keys in the detail (PS3.15 A.5.3.10 keeps the query)."""
    return peer_row(
        peer,
        "search",
        outcome_of(status),
        request_id=request_id,
        status=int(status),
        detail=detail[:MAX_DETAIL],
        study_uid=request.study_uid if request is not None else None,
        patient_id=request.patient_id if request is not None else None,
        count=count,
    )


def _finish(
    ctx: DimseContext,
    event: Any,
    status: int,
    detail: str,
    request: FindRequest | None,
    count: int,
    started: float,
) -> None:
    """The C-FIND's metric and its audit row (:func:`search_row`)."""
    dimse_operation("C-FIND", status_category(status), time.perf_counter() - started)
    if not ctx.settings.auth.audit_enabled:
        return
    row = search_row(Peer.of(event), request_id(event), status, detail, request, count)
    try:
        ctx.bridge.run(ctx.services.audit.record(row))
    except Exception:
        log.exception("could not queue the audit row of a DIMSE search")

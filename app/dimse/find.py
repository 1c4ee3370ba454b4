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
"""

import time
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset

from app.dicom.dimse_query import SOP_CLASSES, FindRequest, InvalidIdentifier, match_identifier
from app.dicom.dimse_query import parse_find as read_identifier
from app.dicom.status import QueryRetrieveStatus
from app.dimse.audit import record
from app.dimse.context import DimseContext
from app.dimse.statuses import error_status, outcome_of

__all__ = ["handle_find"]

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
    started = time.monotonic()
    try:
        request = read_identifier(event.identifier, model)
    except Exception as exc:  # an undecodable identifier fails on first access, too
        if not isinstance(exc, InvalidIdentifier):
            exc = InvalidIdentifier("the identifier cannot be decoded")
        status = error_status(exc, operation="C-FIND")
        _audit(ctx, event, status.Status, f"C-FIND {model}: {exc}", None, 0)
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
        took = time.monotonic() - started
        _audit(ctx, event, final, _detail(request, took), request, count)


def _detail(request: FindRequest, took: float) -> str:
    keys = ", ".join(f"{name}={matcher}" for name, matcher in request.query.filters.items())
    unsupported = (
        f"; unsupported keys: {', '.join(request.unsupported)}" if request.unsupported else ""
    )
    return (
        f"C-FIND {request.model} {request.level.value} ({took * 1000:.0f} ms): "
        f"{keys or 'no match keys'}{unsupported}"
    )


def _audit(
    ctx: DimseContext,
    event: Any,
    status: int,
    detail: str,
    request: FindRequest | None,
    count: int,
) -> None:
    """One ``search`` row (DIMSE-14): the PatientID or StudyInstanceUID asked for when one was,
    the number of matches sent, the keys in the detail (PS3.15 A.5.3.10 keeps the query)."""
    record(
        ctx,
        event,
        "search",
        outcome_of(status),
        status=int(status),
        detail=detail[:MAX_DETAIL],
        study_uid=request.study_uid if request is not None else None,
        patient_id=request.patient_id if request is not None else None,
        count=count,
    )

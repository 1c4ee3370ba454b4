"""What the writer makes of what was queued: the events of a batch, deferred ones built
(:func:`built`), and the row that stands in for an event the database refuses
(:func:`stand_in`)."""

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from typing import Final

from app.services.audit.chain import SLICE
from app.services.audit.journal import Sweep
from app.services.audit.records import AuditRecord, Outcome

__all__ = ["Pending", "built", "built_in_slices", "stand_in"]

log = logging.getLogger(__name__)

#: what the queue holds: an event, or a function the writer calls to build it
#: (:meth:`AuditLog.record_later`), or a sweep of the journal
Pending = AuditRecord | Callable[[], AuditRecord] | Sweep

#: an action or request id a stand-in row keeps (what the front ends make, nothing more)
_PLAIN: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_ACTION_CHARS: Final = 32


async def built_in_slices(batch: Sequence[Pending]) -> list[AuditRecord]:
    """:func:`built`, a slice at a time, returning to the event loop in between (as
    :func:`~app.services.audit.chain.chain_rows_in_slices` does): a whole batch built at once
    held the requests up."""
    events: list[AuditRecord] = []
    for start in range(0, len(batch), SLICE):
        if start:
            await asyncio.sleep(0)
        events += built(batch[start : start + SLICE])
    return events


def built(batch: Sequence[Pending]) -> list[AuditRecord]:
    """The events of a batch, the deferred ones built now; one that fails to build becomes a
    failure row naming the error (an audited request never leaves no trace)."""
    events = []
    for item in batch:
        if isinstance(item, AuditRecord):
            events.append(item)
            continue
        if isinstance(item, Sweep):  # no event: the writer sweeps the journal
            continue
        try:
            events.append(item())
        except Exception as exc:
            log.exception("audit event could not be built")
            events.append(
                AuditRecord(
                    action="unknown",
                    outcome=Outcome.FAILURE,
                    detail=f"audit event could not be built: {type(exc).__name__}",
                )
            )
    return events


def stand_in(event: AuditRecord, refused: BaseException) -> AuditRecord:
    """The row written in place of ``event``, which the database refused on its own: its time,
    and its action and request id when they are plain names, with the refusal; the event's
    content, some part of which could not be stored, goes to the error log instead."""
    action, request_id = event.action, event.request_id
    return AuditRecord(
        action=action if len(action) <= _ACTION_CHARS and _PLAIN.fullmatch(action) else "unknown",
        outcome=Outcome.FAILURE,
        request_id=request_id
        if isinstance(request_id, str) and _PLAIN.fullmatch(request_id)
        else None,
        detail=f"audit event could not be stored: {type(refused).__name__}; it is in the "
        "server's error log",
        time=event.time,
        # a journal row it replaces is claimed (or a sweep would find it, and fail, forever);
        # the journal rows a request's row stood for are not: a sweep chains them on their own
        journal_id=event.journal_id,
    )

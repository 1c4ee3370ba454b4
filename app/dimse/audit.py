"""The DIMSE side of the audit trail (DIMSE-14): associations and operations, with the calling
AE title as the actor and the peer's address as the source, in the same table and hash chain as
REST (``app.services.audit``).

Each operation's row carries a request id ``<association>:<message id>``: the association part
is the same for every operation of one association and its ``association`` row, so the trail
can be read per association.
"""

import itertools
import logging
import threading
import uuid
import weakref
from typing import Any

from app.dimse.context import DimseContext, Peer
from app.services.audit import AuditRecord, WriteAudit

__all__ = [
    "association_id",
    "audit_row",
    "peer_row",
    "peer_write_audit",
    "record",
    "request_id",
    "write_audit",
]

log = logging.getLogger(__name__)

_ids: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()
_ids_lock = threading.Lock()
_prefix = uuid.uuid4().hex[:8]
_counter = itertools.count(1)


def association_id(assoc: Any) -> str:
    """A short id for ``assoc``, the same for its whole life, unique within this process run."""
    with _ids_lock:
        found = _ids.get(assoc)
        if found is None:
            found = _ids[assoc] = f"dimse-{_prefix}-{next(_counter)}"
        return found


def request_id(event: Any) -> str:
    """The audit request id of one DIMSE operation: association id and message id."""
    message_id = getattr(getattr(event, "request", None), "MessageID", None)
    base = association_id(event.assoc)
    return base if message_id is None else f"{base}:{message_id}"


def audit_row(event: Any, action: str, outcome: str, **fields: Any) -> AuditRecord:
    """The audit row of ``event``: actor, source and request id from its association."""
    fields.setdefault("request_id", request_id(event))
    return peer_row(Peer.of(event), action, outcome, **fields)


def peer_row(peer: Peer, action: str, outcome: str, **fields: Any) -> AuditRecord:
    """An audit row whose actor and source are ``peer``."""
    return AuditRecord(
        action=action, outcome=outcome, actor=peer.actor, source=peer.address, **fields
    )


def record(ctx: DimseContext, event: Any, action: str, outcome: str, **fields: Any) -> None:
    """Queue one audit row for ``event`` (:func:`audit_row`).

    Never raises: a handler's answer must not depend on the audit queue (the row of a write is
    committed with the write itself, see :func:`write_audit`).
    """
    if not ctx.settings.auth.audit_enabled:
        return
    try:
        ctx.bridge.run(ctx.services.audit.record(audit_row(event, action, outcome, **fields)))
    except Exception:
        log.exception("could not queue the audit row of a DIMSE %s", action)


def write_audit(ctx: DimseContext, event: Any) -> WriteAudit | None:
    """The audit side of one write operation (a C-STORE), for the service to commit its row
    with the write; None when the audit trail is off."""
    return peer_write_audit(ctx, Peer.of(event), request_id(event))


def peer_write_audit(ctx: DimseContext, peer: Peer, request: str) -> WriteAudit | None:
    """:func:`write_audit` for an operation of ``peer`` with request id ``request``."""
    if not ctx.settings.auth.audit_enabled:
        return None
    return ctx.services.audit.for_write(actor=peer.actor, source=peer.address, request_id=request)

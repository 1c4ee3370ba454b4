"""Who may associate, and the audit of every association (DIMSE-01, DIMSE-14).

DIMSE carries no OAuth: access control is the allow-list of calling AE titles and addresses
(``dimse.allowed_peers``), with TLS client certificates on top when configured. The check runs
when the A-ASSOCIATE-RQ arrives (``EVT_REQUESTED``, where pynetdicom lets a handler answer with an
A-ASSOCIATE-RJ itself), so a caller off the list is refused before any presentation context is
negotiated: rejected-permanent, by the service user, "calling AE title not recognized" (PS3.8
Table 9-21; the title is not recognized *from that address*). pynetdicom's own
``require_calling_aet`` knows titles only, not addresses, and would reject without our audit
row.

Every association leaves audit rows: accepted (with the number of presentation contexts),
rejected (by the allow-list, or by pynetdicom: too many associations), aborted.
"""

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from app.config import AllowedPeer
from app.dimse.audit import association_id, record
from app.dimse.context import DimseContext, Peer
from app.services.audit import Outcome
from app.services.metrics import dimse_association

__all__ = [
    "AllowList",
    "on_aborted",
    "on_established",
    "on_rejected",
    "on_requested",
    "reason_text",
]

log = logging.getLogger(__name__)

#: A-ASSOCIATE-RJ: rejected-permanent, DICOM UL service-user, calling-AE-title-not-recognized
REJECT_UNKNOWN_CALLER: Final = (0x01, 0x01, 0x03)
_REASONS: Final = {
    (0x01, 0x03): "calling AE title not recognized",
    (0x01, 0x07): "called AE title not recognized",
    (0x01, 0x02): "application context not supported",
    (0x01, 0x01): "no reason given",
    (0x02, 0x01): "no reason given (ACSE)",
    (0x02, 0x02): "protocol version not supported",
    (0x03, 0x01): "temporary congestion",
    (0x03, 0x02): "local limit exceeded (too many associations)",
}


@dataclass(frozen=True, slots=True)
class _Entry:
    ae_title: str | None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None


class AllowList:
    """The callers let in: any when empty, else those matching an entry (every field it sets).

    >>> allow = AllowList([AllowedPeer(ae_title="CT1", address="10.0.0.0/24"),
    ...                    AllowedPeer(address="192.168.1.7")])
    >>> allow.allows("CT1", "10.0.0.9"), allow.allows("CT1", "10.0.1.9")
    (True, False)
    >>> allow.allows("ANY", "192.168.1.7"), allow.allows("ANY", "::ffff:192.168.1.7")
    (True, True)
    >>> AllowList([]).allows("ANY", "203.0.113.5")
    True
    """

    def __init__(self, entries: Iterable[AllowedPeer]) -> None:
        self._entries = tuple(
            _Entry(
                entry.ae_title,
                ipaddress.ip_network(entry.address, strict=False) if entry.address else None,
            )
            for entry in entries
        )

    @property
    def open(self) -> bool:
        """Whether every caller is let in (no entries)."""
        return not self._entries

    def allows(self, ae_title: str, address: str) -> bool:
        if not self._entries:
            return True
        ip = _address(address)
        for entry in self._entries:
            if entry.ae_title is not None and entry.ae_title != ae_title.strip():
                continue
            if entry.network is not None and (ip is None or ip not in entry.network):
                continue
            return True
        return False


def reason_text(source: int, reason: int) -> str:
    """An A-ASSOCIATE-RJ's source and reason, in words."""
    return _REASONS.get((source, reason), f"source {source}, reason {reason}")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack listener sees IPv4 callers as ::ffff:a.b.c.d
    return ip


def on_released(_ctx: DimseContext, _event: Any) -> None:
    """``EVT_RELEASED``: the association ended in an orderly release (metrics only: its audit
    row is the one of its acceptance)."""
    dimse_association("released")


def on_requested(ctx: DimseContext, event: Any) -> None:
    """``EVT_REQUESTED``: refuse a caller off the allow-list with an A-ASSOCIATE-RJ.

    Fails closed: pynetdicom goes on with the association when a handler of this event raises,
    so anything going wrong in the check rejects the caller.
    """
    entries = ctx.settings.dimse.allowed_peers
    if not entries:
        return
    try:
        peer = Peer.of(event)
        allowed = AllowList(entries).allows(peer.ae_title, peer.address)
    except Exception:
        log.exception("allow-list check failed; the association is rejected")
        allowed = False
    if allowed:
        return
    # the rejection first: whatever happens to the audit row, the caller is not let in
    result, source, reason = REJECT_UNKNOWN_CALLER
    event.assoc.acse.send_reject(result, source, reason)
    dimse_association("rejected")
    try:
        _record_rejected(ctx, event, f"{_REASONS[(source, reason)]} (not on the allow-list)")
    finally:
        # as pynetdicom does after its own rejections: wait for the peer to close (or the ARTIM
        # timer), then stop the association's DUL thread
        event.assoc.kill()


def on_rejected(ctx: DimseContext, event: Any) -> None:
    """``EVT_REJECTED``: an association pynetdicom rejected itself (too many associations)."""
    dimse_association("rejected")
    answer = event.assoc.acceptor.primitive
    source = int(getattr(answer, "result_source", 0) or 0)
    reason = int(getattr(answer, "diagnostic", 0) or 0)
    _record_rejected(ctx, event, reason_text(source, reason))


def _record_rejected(ctx: DimseContext, event: Any, why: str) -> None:
    """The audit row of a rejected association request (by us, or by pynetdicom itself)."""
    record(
        ctx,
        event,
        "association",
        Outcome.DENIED,
        request_id=association_id(event.assoc),
        detail=f"rejected: {why}",
    )


def on_established(ctx: DimseContext, event: Any) -> None:
    """``EVT_ESTABLISHED``: an association was accepted."""
    dimse_association("accepted")
    assoc = event.assoc
    contexts = assoc.accepted_contexts
    record(
        ctx,
        event,
        "association",
        Outcome.SUCCESS,
        request_id=association_id(assoc),
        count=len(contexts),
        detail=f"accepted: {len(contexts)} presentation contexts, "
        f"{len(assoc.rejected_contexts)} rejected",
    )


def on_aborted(ctx: DimseContext, event: Any) -> None:
    """``EVT_ABORTED``: the association ended by an A-ABORT (either side) or a dropped
    connection; an operation in progress is not acknowledged."""
    dimse_association("aborted")
    record(
        ctx,
        event,
        "association",
        Outcome.FAILURE,
        request_id=association_id(event.assoc),
        detail="aborted",
    )

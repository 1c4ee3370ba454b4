"""``TCP_NODELAY`` on every DIMSE connection: the ones we accept and the ones we open.

A DIMSE exchange is a run of small writes: a request's command and its identifier go as separate
P-DATA-TF PDUs, and a C-FIND answers with a Pending response per match, then the final one. With
Nagle's algorithm (the socket default, which pynetdicom keeps) a small write waits until the
previous one is acknowledged, and the peer's TCP holds that acknowledgement back (Linux's delayed
ACK, 40 ms) while it waits for the next message, which never comes first. Measured with a
pynetdicom SCU on this machine: every study-level C-FIND took at least 97 ms, against Lightbox on
a 10,000-instance index and against Orthanc alike, whatever the query; the index's part was a
few milliseconds. DIMSE messages are whole PDUs already, so nothing is gained by coalescing them.

The socket is pynetdicom's documented ``AssociationSocket.socket`` of the association's
``dul``, reached on ``EVT_CONN_OPEN`` (both roles: pynetdicom fires it for an accepted connection
and for one it opened).
"""

import logging
import socket
from typing import Any

from pynetdicom import evt

__all__ = ["NO_DELAY", "no_delay"]

log = logging.getLogger(__name__)


def no_delay(event: Any) -> None:
    """``EVT_CONN_OPEN``: switch Nagle's algorithm off on the association's TCP socket."""
    transport = getattr(event.assoc.dul, "socket", None)
    sock = getattr(transport, "socket", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:  # closed already: nothing will be written to it
        log.debug("TCP_NODELAY not set: %s", exc)


#: the handler as pynetdicom binds it (``evt_handlers=[NO_DELAY, ...]``)
NO_DELAY = (evt.EVT_CONN_OPEN, no_delay)

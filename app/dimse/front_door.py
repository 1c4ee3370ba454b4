"""The DIMSE port's front door: which associations the event loop serves, which go to pynetdicom.

The listening socket is ours, on the services' event loop. For each connection the front door
*peeks* at the A-ASSOCIATE-RQ (``MSG_PEEK``: the bytes stay in the socket) and decides:

- an association that proposes only storage SOP classes, Verification and the C-FIND SOP
  classes, with no role selection, user identity or asynchronous operations window (what a
  modality, a workstation sending images or searching, ``storescu``, ``findscu`` or another PACS
  forwarding studies propose) is served on the loop (:mod:`app.dimse.loop_association`), without
  pynetdicom's two threads per association;
- any other (C-MOVE, C-GET and its role reversal, Storage Commitment, anything the front door
  cannot decode) is handed, socket and unread request, to pynetdicom's association server
  (``process_request``, the standard library's documented ``socketserver`` entry point that its
  own accept loop calls), exactly as if pynetdicom had accepted it.

Both paths count against one ``dimse.max_associations`` and one allow-list; the front door
rejects (and audits) a caller over the limit or off the list before routing it. With TLS the
front door stands aside and pynetdicom listens itself: the request cannot be peeked at under
TLS, and encrypted links are not where the volume is.
"""

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, Final

from app.dicom.dimse_query import SOP_CLASSES, Service
from app.dimse.associations import REJECT_UNKNOWN_CALLER, AllowList, reason_text
from app.dimse.audit import association_id, peer_row
from app.dimse.context import DimseContext, Peer
from app.dimse.contexts import VERIFICATION, storage_sop_classes, supported_contexts
from app.dimse.loop_association import LoopAssociation
from app.dimse.upper_layer import (
    APPLICATION_CONTEXT,
    ASSOCIATE_RQ,
    AssociationRequest,
    ProtocolError,
    associate_rj,
    decode_request,
)
from app.services.audit import Outcome
from app.services.metrics import dimse_association

__all__ = ["FrontDoor"]

log = logging.getLogger(__name__)

#: the largest A-ASSOCIATE-RQ peeked at (one proposing 128 contexts in several syntaxes is
#: ~15 kB); a larger one goes to pynetdicom
PEEK_MAX: Final = 65536
#: how long to wait for the rest of a request that arrived in pieces: 5 ms, doubling up to a
#: quarter of a second (a request trickled in on purpose costs a few wake-ups a second)
_PEEK_AGAIN: Final = 0.005
_PEEK_AGAIN_MAX: Final = 0.25
#: connections whose request is still awaited, per association allowed: past that, a new
#: connection is closed at once (a flood of silent connections holds no more than this)
UNROUTED_PER_ASSOCIATION: Final = 4
#: A-ASSOCIATE-RJ: rejected-transient, service provider (presentation), local limit exceeded
REJECT_TOO_MANY: Final = (0x02, 0x03, 0x02)


class FrontDoor:
    """Listens on the DIMSE port (on the services' loop) and routes each association."""

    def __init__(
        self,
        ctx: DimseContext,
        handoff: Callable[[socket.socket, Any], None],
        others: Callable[[], int],
    ) -> None:
        """``handoff(sock, address)`` gives a connection to pynetdicom; ``others()`` counts the
        associations pynetdicom serves."""
        self.ctx = ctx
        self._handoff = handoff
        self._others = others
        dimse = ctx.settings.dimse
        private = tuple(dimse.private_sop_classes)
        finds = (uid for uid, (_, service) in SOP_CLASSES.items() if service is Service.FIND)
        ours = {*storage_sop_classes(private), VERIFICATION, *finds}
        self._supported = {
            cx.abstract_syntax: cx.transfer_syntaxes
            for cx in supported_contexts(private)
            if cx.abstract_syntax in ours
        }
        self._allow = AllowList(dimse.allowed_peers)
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        #: associations on the loop (negotiating or established)
        self._serving = 0
        #: connections whose A-ASSOCIATE-RQ is awaited
        self._unrouted = 0

    async def start(self, host: str, port: int) -> int:
        """Bind and listen; returns the port (the one picked when ``port`` is 0)."""
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(128)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._accepting = asyncio.create_task(self._accept(listener), name="dimse-accept")
        return int(listener.getsockname()[1])

    async def stop(self, grace: float) -> None:
        """Stop accepting; let the associations on the loop finish for ``grace`` seconds, then
        abort them."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._connections:
            _, pending = await asyncio.wait(self._connections, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(listener)
            except OSError as exc:  # out of file descriptors, a connection reset in the queue
                log.warning("DIMSE accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._route(conn, address))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _route(self, conn: socket.socket, address: Any) -> None:
        dimse = self.ctx.settings.dimse
        if self._unrouted >= UNROUTED_PER_ASSOCIATION * dimse.max_associations:
            log.warning("DIMSE: too many connections awaiting a request; %s closed", address[0])
            conn.close()
            return
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # app.dimse.sockets
        self._unrouted += 1
        try:
            async with asyncio.timeout(dimse.acse_timeout):
                pdu = await _peek_request(conn)
        except (OSError, TimeoutError):
            pdu = None
        finally:
            self._unrouted -= 1
        if pdu is None:  # closed, or silent past the ACSE timeout
            conn.close()
            return
        request: AssociationRequest | None = None
        if pdu:
            with contextlib.suppress(ProtocolError):
                request = decode_request(pdu)
        peer = Peer(
            request.calling_ae_title if request is not None else "",
            str(address[0]),
            int(address[1]),
        )
        if request is not None and await self._refused(conn, peer, pdu):
            return
        if request is None or not self._ours(request):
            conn.setblocking(True)
            try:
                self._handoff(conn, address)
            except Exception:
                log.exception("could not hand an association to pynetdicom")
                conn.close()
            return
        await self._serve(conn, peer, request, len(pdu))

    def _ours(self, request: AssociationRequest) -> bool:
        return (
            request.application_context == APPLICATION_CONTEXT
            and not request.extended
            and bool(request.contexts)
            and all(abstract in self._supported for _, abstract, _ in request.contexts)
        )

    async def _refused(self, conn: socket.socket, peer: Peer, pdu: bytes) -> bool:
        """Reject (and audit) a caller off the allow-list or over the association limit."""
        if not self._allow.allows(peer.ae_title, peer.address):
            rejection, why = REJECT_UNKNOWN_CALLER, "(not on the allow-list)"
        elif self._serving + self._others() >= self.ctx.settings.dimse.max_associations:
            rejection, why = REJECT_TOO_MANY, ""
        else:
            return False
        result, source, reason = rejection
        with contextlib.suppress(OSError):
            conn.recv(len(pdu))  # the request, read: closing with unread bytes would reset
            conn.send(associate_rj(result, source, reason))
        conn.close()
        dimse_association("rejected")
        if self.ctx.settings.auth.audit_enabled:
            detail = f"rejected: {reason_text(source, reason)} {why}".rstrip()
            row = peer_row(
                peer, "association", Outcome.DENIED, request_id=association_id(conn), detail=detail
            )
            try:
                await self.ctx.services.audit.record(row)
            except Exception:
                log.exception("could not queue the audit row of a rejected association")
        return True

    async def _serve(
        self, conn: socket.socket, peer: Peer, request: AssociationRequest, length: int
    ) -> None:
        self._serving += 1
        try:
            loop = asyncio.get_running_loop()
            consumed = 0
            while consumed < length:  # the peeked request, read for real (it is all there)
                chunk = await loop.sock_recv(conn, length - consumed)
                if not chunk:
                    conn.close()
                    return
                consumed += len(chunk)
            reader, writer = await asyncio.open_connection(sock=conn, limit=1 << 20)
            association = LoopAssociation(self.ctx, reader, writer, peer, request)
            await association.run(self._supported)
        finally:
            self._serving -= 1


async def _peek_request(conn: socket.socket) -> bytes | None:
    """The connection's first PDU, peeked at (left unread): an A-ASSOCIATE-RQ's bytes; ``b""``
    for anything else (not a request, larger than :data:`PEEK_MAX`); None when the peer closed
    before sending one."""
    loop = asyncio.get_running_loop()
    delay = _PEEK_AGAIN
    while True:
        await _readable(loop, conn)
        data = conn.recv(PEEK_MAX, socket.MSG_PEEK)
        if not data:
            return None
        if len(data) >= 6:
            need = 6 + int.from_bytes(data[2:6], "big")
            if data[0] != ASSOCIATE_RQ or need > PEEK_MAX:
                return b""
            if len(data) >= need:
                return data[:need]
        await asyncio.sleep(delay)  # the rest is on its way: no busy loop
        delay = min(2 * delay, _PEEK_AGAIN_MAX)


async def _readable(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    fd = conn.fileno()
    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)

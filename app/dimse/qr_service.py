"""pynetdicom's Query/Retrieve service class with Lightbox's loops (DIMSE-07..13).

pynetdicom's own C-FIND SCP writes each match a handler yields with pydicom (a Dataset built per
match, then written: milliseconds per match), and its C-GET/C-MOVE SCP caps the sub-operations
at 65,535, re-encodes each instance and opens C-MOVE associations with fixed contexts
(:mod:`app.dimse.suboperations` says why that will not do). :class:`QueryRetrieveService`
keeps pynetdicom's class but takes over the three SCP methods for the AEs :func:`install`-ed:

* C-FIND: the handler (``app.dimse.find``) yields ``(status, identifier)`` with the identifier
  already encoded, bytes in the context's transfer syntax (``app.dicom.dimse_query.matches``),
  which go out as they are;
* C-GET and C-MOVE: the handler (``app.dimse.retrieve``) returns a runner, which this class
  calls with an :class:`~app.dimse.suboperations.Exchange` for its responses.

pynetdicom picks the service class by SOP class UID
(``pynetdicom.association.uid_to_service_class``): :func:`install` wraps that function once per
process so that the Query/Retrieve SOP classes get :class:`QueryRetrieveService`, and marks the
AE; associations of any other AE (a test's pynetdicom peer) keep pynetdicom's behaviour
unchanged. Handlers are still bound and triggered the pynetdicom way (``evt.trigger``), so
``app.dimse.server`` registers them as any other.
"""

import logging
import threading
import time
from collections.abc import Iterator
from io import BytesIO
from typing import Any, Final

from pydicom import Dataset
from pynetdicom import AE, association, evt
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import QueryRetrieveServiceClass

from app.dicom.status import QueryRetrieveStatus
from app.dimse.suboperations import Exchange

__all__ = ["QueryRetrieveService", "install"]

log = logging.getLogger(__name__)

#: the attribute marking an AE whose Query/Retrieve Lightbox serves
_MARK: Final = "_lightbox_query_retrieve"
_PENDING: Final = frozenset({0xFF00, 0xFF01})


class QueryRetrieveService(QueryRetrieveServiceClass):
    """pynetdicom's Query/Retrieve service with Lightbox's C-FIND, C-GET and C-MOVE loops
    (module docstring) on the associations of :func:`install`-ed AEs."""

    def _ours(self) -> bool:
        return bool(getattr(self.assoc.ae, _MARK, False))

    def _c_find_scp(self, req: C_FIND, context: PresentationContext) -> None:
        if not self._ours():
            super()._c_find_scp(req, context)
            return
        cx_id = int(context.context_id or 0)
        try:
            answers: Iterator[tuple[int | Dataset, bytes | None]] | None = evt.trigger(
                self.assoc,
                evt.EVT_C_FIND,
                {"request": req, "context": context.as_tuple, "_is_cancelled": self.is_cancelled},
            )
            pending = _Pending(self, req, cx_id)
            for status, identifier in answers or ():
                if not self.assoc.is_established:
                    return
                if isinstance(status, int) and status in _PENDING:
                    pending.send(status, identifier or b"")
                    continue
                response = self._find_response(req, status)
                self.dimse.send_msg(response, cx_id)  # a final status: Cancel, a failure
                return
        except Exception:
            log.exception("C-FIND failed")
            if self.assoc.is_established:
                failure = self._find_response(req, QueryRetrieveStatus.UNABLE_TO_PROCESS)
                self.dimse.send_msg(failure, cx_id)
            return
        if self.assoc.is_established:
            self.dimse.send_msg(self._find_response(req, QueryRetrieveStatus.SUCCESS), cx_id)

    def _find_response(self, req: C_FIND, status: int | Dataset) -> C_FIND:
        response = C_FIND()
        response.MessageIDBeingRespondedTo = req.MessageID
        response.AffectedSOPClassUID = req.AffectedSOPClassUID
        found: C_FIND = self.validate_status(status, response)
        return found

    def _get_scp(self, req: C_GET, context: PresentationContext) -> None:
        if not self._ours():
            super()._get_scp(req, context)
            return
        self._retrieve(req, context, evt.EVT_C_GET)

    def _move_scp(self, req: C_MOVE, context: PresentationContext) -> None:
        if not self._ours():
            super()._move_scp(req, context)
            return
        self._retrieve(req, context, evt.EVT_C_MOVE)

    def _retrieve(self, req: C_GET | C_MOVE, context: PresentationContext, event: Any) -> None:
        exchange = Exchange(self, req, context)
        try:
            runner = evt.trigger(
                self.assoc,
                event,
                {"request": req, "context": context.as_tuple, "_is_cancelled": self.is_cancelled},
            )
            if not callable(runner):
                raise TypeError(f"the {event.name} handler returned no runner")
            runner(exchange)
        except Exception:
            log.exception("%s failed", event.name)
            exchange.refuse(QueryRetrieveStatus.UNABLE_TO_PROCESS)


class _Pending:
    """The Pending responses of one C-FIND, sent as one P-DATA-TF PDU each.

    pynetdicom builds, encodes and fragments a response's command set for every match (a
    pydicom Dataset written twice: its group length, then itself), and sends the command and
    the identifier as two PDUs: ~60 % of the association's CPU per match on 200-match queries.
    A query's Pending command sets differ only by status, so each is encoded once, and the
    command and the identifier go out as the two PDVs of one P-DATA (PS3.8 §9.3.5: a PDU holds
    one or more PDVs; the fragments of one message stay together, in order). A response too
    large for the peer's maximum PDU takes pynetdicom's path, which fragments it.

    pynetdicom's sender thread sends everything queued before it reads the socket again, so a
    C-CANCEL is only read once its queue runs dry. Responses therefore go out in windows of
    :data:`WINDOW`: before the next window, wait until the sender has sent the last one and
    has had a look at the socket. That also bounds what one query queues for a slow peer.
    """

    def __init__(self, service: QueryRetrieveService, req: C_FIND, context_id: int) -> None:
        self._service = service
        self._req = req
        self._context_id = context_id
        self._commands: dict[int, bytes] = {}
        self._limit = int(service.dimse.maximum_pdu_size or 0)  # the peer's; 0: no limit
        self._queued = 0

    def send(self, status: int, identifier: bytes) -> None:
        command = self._commands.get(status)
        if command is None:
            command = self._commands[status] = self._command(status)
        # two PDV items: a length (4), the context ID (1), the control header (1), the value
        if self._limit and 12 + len(command) + len(identifier) > self._limit:
            response = self._service._find_response(self._req, status)
            response.Identifier = BytesIO(identifier)
            self._service.dimse.send_msg(response, self._context_id)  # pynetdicom fragments it
            return
        if self._queued >= WINDOW:
            self._drain()
        self._queued += 1
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((self._context_id, _LAST_COMMAND + command))
        pdata.presentation_data_value_list.append((self._context_id, _LAST_DATA + identifier))
        self._service.assoc.dul.send_pdu(pdata)

    def _drain(self) -> None:
        assoc = self._service.assoc
        while assoc.dul.to_provider_queue.qsize() and assoc.is_established:
            time.sleep(_DRAIN_NAP)
        time.sleep(_DRAIN_NAP)  # the sender's next turn reads the socket (a C-CANCEL)
        self._queued = 0

    def _command(self, status: int) -> bytes:
        response = self._service._find_response(self._req, status)
        response.Identifier = BytesIO()  # present: CommandDataSetType says a data set follows
        message = C_FIND_RSP()
        message.primitive_to_message(response)
        return bytes(encode(message.command_set, True, True) or b"")


#: Pending responses queued at a time (:class:`_Pending`), and the nap while they go out
WINDOW: Final = 32
_DRAIN_NAP: Final = 0.0002
#: PDV message control headers (PS3.8 §E.2): the last fragment of a command, of a data set
_LAST_COMMAND: Final = b"\x03"
_LAST_DATA: Final = b"\x02"

_install_lock = threading.Lock()
_installed = False


def install(ae: AE) -> None:
    """Serve Query/Retrieve on ``ae``'s associations with :class:`QueryRetrieveService`."""
    global _installed
    setattr(ae, _MARK, True)
    with _install_lock:
        if _installed:
            return
        original = association.uid_to_service_class  # type: ignore[attr-defined]

        def service_class(uid: str) -> Any:
            found = original(uid)
            return QueryRetrieveService if found is QueryRetrieveServiceClass else found

        association.uid_to_service_class = service_class  # type: ignore[attr-defined]
        _installed = True

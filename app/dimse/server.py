"""The DIMSE listener: the front door on the services' loop, one pynetdicom application entity
behind it, their presentation contexts and event handlers, started and stopped with the services
they call (DIMSE-01).

Threads and the services loop
-----------------------------
The services are asynchronous and live on one event loop in one thread
(:class:`~app.dimse.bridge.Bridge`), opened once for the process
(``bridge.entered(open_services(settings))``). The DIMSE port belongs to the front door
(:mod:`app.dimse.front_door`), which runs on that loop and peeks at each A-ASSOCIATE-RQ:

- a storage or search association (storage SOP classes, Verification and C-FIND only:
  modalities, ``storescu``, ``findscu``, a workstation's worklist of studies, a PACS
  forwarding) is served on the loop itself (:mod:`app.dimse.loop_association`): no thread of
  its own, its C-STOREs calling the group commit directly, its C-FINDs streaming the query
  service's matches (:mod:`app.dimse.loop_find`);
- any other is handed to pynetdicom's association server, which runs it in a thread of its own
  (two, with its socket reader) and calls our handlers synchronously there. A handler makes its
  service call through the bridge and blocks its association thread, never the loop, until the
  answer is there.

So:

- there is no event loop per association, and one database pool, one audit writer, one ingest
  group commit (:class:`~app.services.group_commit.GroupCommit`) serve every association: the
  C-STOREs of concurrent associations meet in the loop and share index transactions;
- the HTTP workers never carry DIMSE work: ``lightbox serve`` runs this listener in a child
  process of its own (one listener whatever the number of HTTP workers), ``lightbox dimse``
  runs it alone;
- a slow service call blocks only its association, as DIMSE expects (one operation at a time
  per association; no asynchronous operations window is offered).

With TLS configured the front door stands aside and pynetdicom listens on the port itself (a
request cannot be peeked at through TLS).

Handlers
--------
:func:`event_handlers` is the one list of what the listener does: pairs of a pynetdicom event
and a function called as ``handler(ctx, event)`` (bound with :func:`functools.partial`), each in
the module of its service (``echo``, ``store``, ``commitment``, ``associations``, ``find``,
``retrieve``). The presentation contexts are in :mod:`app.dimse.contexts`.

Only pynetdicom's public API is used: the ``AE`` and its documented properties, ``start_server``
(and, behind the front door, its server's ``shutdown`` and ``process_request``, the standard
library's ``socketserver`` interface it implements),
event handlers, ``register_uid`` (retired and private storage classes), ``Association``'s
documented attributes, ``acse.send_reject`` (the way pynetdicom documents for refusing an
association from ``EVT_REQUESTED``) and ``dul.peek_next_pdu`` (is a release pending, before a
Storage Commitment report goes on the requester's association). Two documented ``_config``
options are set, for reasons given where (:mod:`app.dimse.receive`): ``STORE_RECV_CHUNKED_DATASET``
(data sets written to a file as they arrive) and ``LOG_HANDLER_LEVEL``.
Beyond it, one private attribute is read: a presentation context's list of transfer syntaxes,
copied without re-validating its UIDs for each association (:class:`_SharedSyntaxes`: 125 ms of
CPU saved per association).
Query/Retrieve needs more (C-FIND matches encoded without a pydicom Dataset each, C-STORE
sub-operations as stored, no 65,535-instance cap): :mod:`app.dimse.qr_service`,
:mod:`app.dimse.suboperations` and :mod:`app.dimse.sender` say what, and why.
"""

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import Any, Final

from pynetdicom import AE, evt, register_uid
from pynetdicom.events import EventHandlerType, EventType
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class
from pynetdicom.transport import ThreadedAssociationServer

from app.config import DimseSettings, Settings
from app.dicom.filemeta import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from app.dimse import associations, commitment, echo, find, qr_service, receive, retrieve, store
from app.dimse.bridge import Bridge, BridgeClosed
from app.dimse.context import DimseContext
from app.dimse.contexts import supported_contexts
from app.dimse.front_door import FrontDoor
from app.dimse.sockets import NO_DELAY
from app.dimse.tls import server_context
from app.services.container import open_services
from app.services.metrics import dimse_operation, status_category

__all__ = ["DimseServer", "build_ae", "event_handlers", "listening"]

log = logging.getLogger(__name__)

#: what a handler of ours is: ``handler(ctx, event)``
Handler = Callable[[DimseContext, Any], Any]

#: seconds ``stop`` lets running associations finish before it aborts them
STOP_GRACE = 10.0


def event_handlers(ctx: DimseContext) -> list[EventHandlerType]:
    """Every handler the listener binds, as ``(event, handler)`` pairs; each handler is a
    function of its service's module called as ``handler(ctx, event)``."""
    handlers: list[tuple[EventType, Handler]] = [
        # associations: the allow-list, and the audit of each (DIMSE-01, DIMSE-14)
        (evt.EVT_REQUESTED, associations.on_requested),
        (evt.EVT_REJECTED, associations.on_rejected),
        (evt.EVT_ESTABLISHED, associations.on_established),
        (evt.EVT_ABORTED, associations.on_aborted),
        (evt.EVT_RELEASED, associations.on_released),
        # C-STORE data sets: their size as they arrive (app.dimse.receive)
        (evt.EVT_DATA_RECV, receive.on_data),
        # services
        (evt.EVT_C_ECHO, echo.handle_echo),
        (evt.EVT_C_STORE, store.handle_store),
        (evt.EVT_N_ACTION, commitment.handle_action),
        (evt.EVT_C_FIND, find.handle_find),
        (evt.EVT_C_MOVE, retrieve.handle_move),
        (evt.EVT_C_GET, retrieve.handle_get),
    ]
    bound: list[EventHandlerType] = [
        (
            event,
            _bound(
                _measured(_OPERATIONS[event], handler) if event in _OPERATIONS else handler, ctx
            ),
        )
        for event, handler in handlers
    ]
    # no Nagle delay between the small PDUs of a DIMSE exchange (app.dimse.sockets)
    return [NO_DELAY, *bound]


#: the service events, by the DIMSE operation the metrics name them
_OPERATIONS: Final = {
    evt.EVT_C_ECHO: "C-ECHO",
    evt.EVT_C_STORE: "C-STORE",
    evt.EVT_N_ACTION: "N-ACTION",
}


def _measured(operation: str, handler: Handler) -> Handler:
    """``handler``, its duration and status counted (``lightbox_dimse_operations_total``)."""

    def measured(ctx: DimseContext, event: Any) -> Any:
        started = time.perf_counter()
        answer: Any = None
        try:
            answer = handler(ctx, event)
            return answer
        finally:
            dimse_operation(
                operation, status_category(_status(answer)), time.perf_counter() - started
            )

    return functools.update_wrapper(measured, handler)


def _status(answer: Any) -> int:
    """The status code of a handler's answer: an int, a Dataset with Status, or a tuple whose
    first item is one of those (N-ACTION); none (the handler raised) is a failure, 0xC000."""
    if isinstance(answer, tuple) and answer:
        answer = answer[0]
    if isinstance(answer, int):
        return answer
    status = getattr(answer, "Status", None)
    return int(status) if isinstance(status, int) else 0xC000


def _bound(handler: Handler, ctx: DimseContext) -> Callable[[Any], Any]:
    """``handler`` with ``ctx`` bound, keeping its name (pynetdicom names it in its logs)."""
    return functools.update_wrapper(functools.partial(handler, ctx), handler)


def build_ae(settings: DimseSettings) -> AE:
    """Our application entity: title, PDU size, timeouts, association limit, contexts."""
    ae = AE(ae_title=settings.ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.maximum_pdu_size = settings.max_pdu
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.maximum_associations = settings.max_associations
    qr_service.install(ae)  # our C-FIND, C-GET and C-MOVE loops (app.dimse.qr_service)
    for context in supported_contexts(tuple(settings.private_sop_classes)):
        if context.accept_roles and uid_to_service_class(context.abstract_syntax) is not (
            StorageServiceClass
        ):
            # a retired or private storage class pynetdicom does not know: without this, it
            # accepts the context but answers its C-STOREs with no handler called
            register_uid(
                context.abstract_syntax,
                "LightboxStorage_" + context.abstract_syntax.replace(".", "_"),
                StorageServiceClass,
            )
        roles = True if context.accept_roles else None
        ae.add_supported_context(
            context.abstract_syntax,
            list(context.transfer_syntaxes),
            scu_role=roles,
            scp_role=roles,
        )
    return ae


class DimseServer:
    """The listener: started on the services of ``ctx``; :meth:`stop` ends it."""

    def __init__(self, ctx: DimseContext) -> None:
        self.ctx = ctx
        self.ae = build_ae(ctx.settings.dimse)
        self._server: ThreadedAssociationServer | None = None
        self._front: FrontDoor | None = None
        self._port: int | None = None
        self._receiving = ExitStack()

    def start(self) -> None:
        """Bind and listen (on the services' loop, or in pynetdicom's threads with TLS);
        returns at once."""
        settings = self.ctx.settings.dimse
        directory = receive.receive_dir(self.ctx.services.ingest.spool_dir)
        with ExitStack() as starting:
            starting.enter_context(receive.receiving(directory))
            sweeper = receive.Sweeper(directory)
            sweeper.start()
            starting.callback(sweeper.stop)
            # without TLS the port is the front door's (app.dimse.front_door), and pynetdicom's
            # server only takes the associations handed to it: it listens on an ephemeral
            # loopback port just long enough to be built, then stops accepting
            tls = settings.tls
            server = self.ae.start_server(
                (settings.host, settings.port) if tls else ("127.0.0.1", 0),
                block=False,
                ssl_context=server_context(settings),
                evt_handlers=event_handlers(self.ctx),
                contexts=[_SharedSyntaxes.of(cx) for cx in self.ae.supported_contexts],
            )
            assert server is not None  # block=False
            self._server = server
            if tls:
                self._port = int(server.server_address[1])
            else:
                server.shutdown()  # its accept loop and socket; process_request still works
                front = FrontDoor(self.ctx, server.process_request, self._pynetdicom_count)
                self._port = self.ctx.bridge.run(front.start(settings.host, settings.port))
                self._front = front
            self._receiving = starting.pop_all()
        log.info("DIMSE: %s listening on %s:%d", settings.ae_title, settings.host, self.port)

    def _pynetdicom_count(self) -> int:
        """The associations pynetdicom is serving as acceptor."""
        return sum(1 for assoc in self.ae.active_associations if assoc.is_acceptor)

    @property
    def port(self) -> int:
        """The port listened on (the configured one, or the one picked for port 0)."""
        assert self._port is not None
        return self._port

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop listening, let running associations finish for ``grace`` seconds, then abort
        those still open (an operation in progress is then not acknowledged)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        front, self._front = self._front, None
        deadline = time.monotonic() + grace
        if front is not None:
            with suppress(BridgeClosed):
                self.ctx.bridge.run(front.stop(grace))
        else:
            server.shutdown()
        for assoc in self.ae.active_associations:
            assoc.join(max(0.0, deadline - time.monotonic()))
        self.ae.shutdown()
        self._receiving.close()


class _SharedSyntaxes(PresentationContext):
    """A supported presentation context whose copies share its UIDs.

    pynetdicom gives every association a ``copy.deepcopy`` of the listener's contexts; ours are
    some 190 abstract syntaxes with 6,700 transfer syntaxes, and a deep copy rebuilds (and
    validates) each UID: 125 ms of CPU per association, measured, while the GIL is held. The
    UIDs are immutable strings, so a copy needs only new lists.
    """

    @classmethod
    def of(cls, context: PresentationContext) -> "_SharedSyntaxes":
        shared = cls.__new__(cls)
        shared.__dict__.update(context.__dict__)
        shared._transfer_syntax = list(context._transfer_syntax)
        return shared

    def __deepcopy__(self, memo: dict[int, Any]) -> "_SharedSyntaxes":
        return self.of(self)


@contextmanager
def listening(settings: Settings, bridge: Bridge | None = None) -> Iterator[DimseServer]:
    """Open the services on a bridge (``bridge``, else one of its own), start the listener, and
    stop both on exit."""
    own = bridge is None
    if bridge is None:
        bridge = Bridge()
        bridge.start()
    try:
        with bridge.entered(open_services(settings)) as services:
            # the audit rows a previous run committed with its writes but did not chain (it
            # died in between) are chained now, by the writer, in the background
            bridge.run(services.audit.recover())
            server = DimseServer(DimseContext(services, bridge, settings))
            server.start()
            try:
                yield server
            finally:
                server.stop()
    finally:
        if own:
            bridge.stop()

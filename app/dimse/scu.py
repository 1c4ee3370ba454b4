"""Lightbox as a DIMSE client (SCU): C-FIND, C-GET and C-MOVE to a remote AE (PS3.4 Annex C,
PS3.7 §9.1.2-§9.1.4), blocking, with pynetdicom.

Each call opens one association, runs its request and releases it; callers on an event loop run
it in a worker thread (:mod:`app.dimse.pull`). A C-GET receives its C-STORE sub-operations on
the same association (PS3.4 §C.4.3): it proposes a storage context for each SOP class it expects
with SCP role selection (PS3.7 §D.3.3.4), and each transfer syntax in a context of its own when
the 128 presentation contexts of an association allow it (PS3.8 §9.3.2.2), so the source can send
every instance in the syntax it holds it in, byte for byte, rather than transcode it.

:class:`Cancel` aborts the association of a request from another thread (a cancelled job).
"""

import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from pydicom import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from app.dicom.uids import ENCAPSULATED
from app.dimse.contexts import STORAGE_TRANSFER_SYNTAXES
from app.dimse.sockets import NO_DELAY

__all__ = [
    "TRANSFER_SYNTAXES",
    "Cancel",
    "Peer",
    "RetrieveResult",
    "ScuError",
    "ScuSettings",
    "StoreHandler",
    "find",
    "finder",
    "get",
    "move",
    "reachable",
    "storage_contexts",
]

#: PS3.8 §9.3.2.2: at most 128 presentation contexts per association
MAX_CONTEXTS: Final = 128
#: the transfer syntaxes a C-GET accepts: the listener's (DIMSE-04, in its order of preference),
#: then the other encapsulated ones ingest reads (the retired JPEG processes an old archive may
#: hold); when contexts run short, the first ones get a context each and the rest share one
TRANSFER_SYNTAXES: Final = (
    *STORAGE_TRANSFER_SYNTAXES,
    *sorted(ENCAPSULATED - set(STORAGE_TRANSFER_SYNTAXES)),
)

#: C-FIND/C-GET/C-MOVE final statuses (PS3.4 Table C.4-1/C.4-2/C.4-3)
SUCCESS: Final = 0x0000
_PENDING: Final = frozenset({0xFF00, 0xFF01})


class ScuError(Exception):
    """An association could not be made, was refused or aborted, or a request failed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class ScuSettings:
    """How Lightbox calls out: its AE title and the association's limits."""

    ae_title: str
    #: ACSE, DIMSE and network time-outs (seconds)
    timeout: float = 60.0
    #: largest PDU we receive (0: no limit)
    max_pdu: int = 1024 * 1024
    #: the TLS context for peers marked ``tls`` (:func:`app.dimse.tls.client_context`: our
    #: certificate, the CAs theirs must chain to); None: the system's CAs, no certificate
    tls_context: ssl.SSLContext | None = None


@dataclass(frozen=True, slots=True)
class Peer:
    """Where to open the association."""

    ae_title: str
    host: str
    port: int
    tls: bool = False

    @property
    def name(self) -> str:
        return f"{self.ae_title} at {self.host}:{self.port}"


@dataclass(slots=True)
class RetrieveResult:
    """A C-GET's or C-MOVE's sub-operation counts and final status (PS3.4 §C.4.2.1.4)."""

    status: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    failed_uids: tuple[str, ...] = ()


class Cancel:
    """Aborts a request's association from another thread; once called, a request that has not
    associated yet does not start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._assoc: Association | None = None
        self.requested = False

    def attach(self, assoc: Association) -> None:
        with self._lock:
            self._assoc = assoc
            if self.requested:
                assoc.abort()

    def __call__(self) -> None:
        with self._lock:
            self.requested = True
            assoc = self._assoc
        if assoc is not None and assoc.is_established:
            assoc.abort()
            # the request's thread waits for the next DIMSE message, which an abort does not
            # send: wake it with "no message" (what a DIMSE time-out gives), so it ends now
            # rather than after the time-out
            assoc.dimse.msg_queue.put((None, None))


#: a received C-STORE sub-operation (a pynetdicom event) -> its C-STORE status
StoreHandler = Callable[[Any], int]


def storage_contexts(sop_classes: Sequence[str]) -> list[PresentationContext]:
    """Storage contexts for a C-GET receiving ``sop_classes`` (with one context kept for the
    C-GET itself): each transfer syntax alone while the budget allows, the rest together.

    >>> cts = storage_contexts(["1.2.840.10008.5.1.4.1.1.2"])
    >>> len(cts), cts[0].transfer_syntax
    (53, ['1.2.840.10008.1.2.1'])
    >>> cts = storage_contexts([f"1.2.3.{n}" for n in range(10)])
    >>> len(cts), len(cts[10].transfer_syntax), len(cts[11].transfer_syntax)
    (120, 1, 42)
    """
    classes = list(dict.fromkeys(sop_classes))
    if not classes:
        # unknown (the source did not say): each standard storage class once, every syntax
        return [
            build_context(str(cx.abstract_syntax), list(TRANSFER_SYNTAXES))
            for cx in StoragePresentationContexts[: MAX_CONTEXTS - 1]
        ]
    if len(classes) > MAX_CONTEXTS - 1:
        raise ScuError(f"{len(classes)} SOP classes cannot be retrieved on one association")
    budget = (MAX_CONTEXTS - 1) // len(classes)
    contexts = []
    for sop_class in classes:
        if budget >= len(TRANSFER_SYNTAXES):
            contexts += [build_context(sop_class, ts) for ts in TRANSFER_SYNTAXES]
            continue
        alone, shared = TRANSFER_SYNTAXES[: budget - 1], TRANSFER_SYNTAXES[budget - 1 :]
        contexts += [build_context(sop_class, ts) for ts in alone]
        contexts.append(build_context(sop_class, list(shared)))
    return contexts


@contextmanager
def _associated(
    ours: ScuSettings,
    peer: Peer,
    contexts: Sequence[PresentationContext],
    *,
    roles: Sequence[Any] = (),
    handlers: Sequence[tuple[Any, Callable[..., Any]]] = (),
    cancel: Cancel | None = None,
) -> Iterator[Association]:
    if cancel is not None and cancel.requested:
        raise ScuError("cancelled")
    ae = AE(ae_title=ours.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ours.timeout
    ae.connection_timeout = ours.timeout
    ae.maximum_pdu_size = ours.max_pdu
    ae.requested_contexts = list(contexts)
    tls = None
    if peer.tls:  # peers are known by address: their certificate names a device, not a host
        context = ours.tls_context or ssl.create_default_context()
        tls = (context, None if ours.tls_context is not None else peer.host)
    connection = _Connection()
    try:
        try:
            assoc = ae.associate(
                peer.host,
                peer.port,
                ae_title=peer.ae_title,
                ext_neg=list(roles),
                evt_handlers=[*handlers, NO_DELAY, (evt.EVT_CONN_OPEN, connection.opened)],
                tls_args=tls,  # type: ignore[arg-type]  # no host name: pynetdicom takes None
            )
        except (OSError, ValueError) as exc:
            raise ScuError(f"cannot reach {peer.name}: {exc}") from None
        if not assoc.is_established:
            raise ScuError(_refusal(assoc, peer, connected=connection.connected))
        if cancel is not None:
            cancel.attach(assoc)
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()
    finally:
        connection.close()
        ae.shutdown()


class _Connection:
    """The association's TCP socket, kept from its opening (``EVT_CONN_OPEN``) to be closed
    for sure at the end: pynetdicom shuts a socket down before closing it and skips the close
    when the shutdown fails (the peer closed first, after a rejection or an abort), which
    leaves the socket to the garbage collector."""

    def __init__(self) -> None:
        self.connected = False
        self.socket: socket.socket | None = None

    def opened(self, event: Any) -> None:
        self.connected = True
        transport = getattr(event.assoc.dul, "socket", None)
        self.socket = getattr(transport, "socket", None)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()  # a second close is a no-op


def reachable(peer: Peer, timeout: float) -> None:
    """Raise :class:`ScuError` unless a TCP connection to the peer opens.

    pynetdicom leaks its socket when the connection is refused (it shuts the unconnected socket
    down, which fails, and then skips the close; :class:`_Connection` cannot help, the connection
    never opened): the first contact with a source checks first, so an unreachable one is
    reported without that leak.
    """
    try:
        with socket.create_connection((peer.host, peer.port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ScuError(f"cannot reach {peer.name}: {reason}") from None


def _refusal(assoc: Association, peer: Peer, *, connected: bool) -> str:
    """Why an association was not established, as an administrator can act on it."""
    if not connected:
        return f"cannot reach {peer.name}: no connection (refused or timed out)"
    if assoc.is_rejected:
        rejection = getattr(assoc.acceptor, "rejection", None)
        reason = ""
        if rejection is not None:
            reason = f" (result 0x{rejection.result:02X}, source 0x{rejection.result_source:02X}, "
            reason += f"reason 0x{rejection.diagnostic:02X})"
        return f"{peer.name} rejected the association{reason}: is our AE title known to it?"
    if assoc.is_aborted:
        return f"{peer.name} aborted the association"
    return f"{peer.name} did not answer the association request (timed out)"


def _usable(assoc: Association, sop_class: str, peer: Peer) -> None:
    if not any(cx.abstract_syntax == sop_class for cx in assoc.accepted_contexts):
        raise ScuError(f"{peer.name} does not accept {sop_class} (Study Root)")


@contextmanager
def finder(
    ours: ScuSettings, peer: Peer, *, cancel: Cancel | None = None
) -> Iterator[Callable[[Dataset], list[Dataset]]]:
    """One association for several Study Root C-FINDs (PS3.4 §C.4.1): ``search(identifier)``
    gives every match of one."""
    model = StudyRootQueryRetrieveInformationModelFind
    with _associated(ours, peer, [build_context(model)], cancel=cancel) as assoc:
        _usable(assoc, model, peer)

        def search(identifier: Dataset) -> list[Dataset]:
            matches = []
            for status, found in assoc.send_c_find(identifier, model):
                code = _status(status, peer, "C-FIND")
                if code in _PENDING:
                    if found is not None:
                        matches.append(found)
                    continue
                if code != SUCCESS:
                    raise ScuError(f"{peer.name} failed the C-FIND (status 0x{code:04X})", code)
            return matches

        yield search


def find(
    ours: ScuSettings, peer: Peer, identifier: Dataset, *, cancel: Cancel | None = None
) -> list[Dataset]:
    """A Study Root C-FIND: every match."""
    with finder(ours, peer, cancel=cancel) as search:
        return search(identifier)


def get(
    ours: ScuSettings,
    peer: Peer,
    identifiers: Sequence[Dataset],
    sop_classes: Sequence[str],
    on_store: StoreHandler,
    *,
    cancel: Cancel | None = None,
) -> RetrieveResult:
    """Study Root C-GETs on one association; each instance is handed to ``on_store`` as it
    arrives. The counts are summed over the requests, the status is the last non-success."""
    model = StudyRootQueryRetrieveInformationModelGet
    storage = storage_contexts(sop_classes)
    roles = [
        build_role(uid, scp_role=True)
        for uid in dict.fromkeys(str(cx.abstract_syntax) for cx in storage)
    ]
    handlers = [(evt.EVT_C_STORE, on_store)]
    contexts = [build_context(model), *storage]
    with _associated(ours, peer, contexts, roles=roles, handlers=handlers, cancel=cancel) as assoc:
        _usable(assoc, model, peer)
        return _summed(
            _retrieved(assoc.send_c_get(identifier, model), peer, "C-GET")
            for identifier in identifiers
        )


def move(
    ours: ScuSettings,
    peer: Peer,
    identifiers: Sequence[Dataset],
    destination: str,
    *,
    cancel: Cancel | None = None,
) -> RetrieveResult:
    """Study Root C-MOVEs to ``destination`` (an AE title the source knows) on one
    association; counts summed as in :func:`get`."""
    model = StudyRootQueryRetrieveInformationModelMove
    with _associated(ours, peer, [build_context(model)], cancel=cancel) as assoc:
        _usable(assoc, model, peer)
        return _summed(
            _retrieved(assoc.send_c_move(identifier, destination, model), peer, "C-MOVE")
            for identifier in identifiers
        )


def _retrieved(responses: Iterator[tuple[Dataset, Any]], peer: Peer, what: str) -> RetrieveResult:
    result = RetrieveResult()
    for status, found in responses:
        code = _status(status, peer, what)
        result.status = code
        result.remaining = int(getattr(status, "NumberOfRemainingSuboperations", 0) or 0)
        result.completed = int(getattr(status, "NumberOfCompletedSuboperations", 0) or 0)
        result.failed = int(getattr(status, "NumberOfFailedSuboperations", 0) or 0)
        result.warning = int(getattr(status, "NumberOfWarningSuboperations", 0) or 0)
        if code in _PENDING:
            continue
        if found is not None and "FailedSOPInstanceUIDList" in found:
            value = found.FailedSOPInstanceUIDList
            result.failed_uids = tuple(value) if isinstance(value, list | tuple) else (value,)
    return result


def _summed(results: Iterable[RetrieveResult]) -> RetrieveResult:
    total = RetrieveResult(status=SUCCESS)
    for result in results:
        total.completed += result.completed
        total.failed += result.failed
        total.warning += result.warning
        total.failed_uids += result.failed_uids
        if result.status != SUCCESS:
            total.status = result.status
    return total


def _status(status: Dataset, peer: Peer, what: str) -> int:
    if "Status" not in status:  # no answer: time-out, abort, or an invalid response
        raise ScuError(f"{peer.name} sent no {what} response (aborted or timed out)")
    return int(status.Status)

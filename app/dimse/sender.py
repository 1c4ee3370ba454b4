"""Stored instances sent as C-STORE requests, their bytes as stored (PS3.7 §9.3.1; DIMSE-11..13).

Used where Lightbox is the storage SCU: C-MOVE sub-operations on an association it opens to the
destination (:func:`associate`, the presentation contexts from :func:`propose_contexts`), C-GET
sub-operations on the requestor's own association (role reversal, PS3.7 §D.3.3.4), and
``lightbox pull`` or Storage Commitment later.

Why not ``Association.send_c_store``: it takes a pydicom Dataset, which it re-encodes (a parse and
a write per instance, and bytes no longer exactly as stored), or a file path, which it reads
whole unless a process-wide option is set. :func:`send_stored` sends the data set as the retrieve
service reads it, chunk by chunk: the command set goes through pynetdicom's own message encoding,
the data set follows as P-DATA fragments no larger than the peer's maximum PDU (PS3.8 §9.3.5),
and the response comes from pynetdicom's DIMSE queue. Memory stays one chunk per association
(plus what the socket has not taken: fragments wait while the send queue is long).

This reaches past pynetdicom's public API, and only here: the ``C_STORE`` primitive and
``C_STORE_RQ`` message (``primitive_to_message``, ``encode_msg``), the ``P_DATA`` primitive,
``dul.send_pdu`` and ``dul.to_provider_queue`` (its length, for back-pressure),
``dimse.get_msg``, ``dimse.maximum_pdu_size``, ``dul.socket`` (closed after a failed request,
as pynetdicom's own C-MOVE does), and on associations we requested, the reactor
pause ``send_c_store`` itself uses (``_reactor_checkpoint``, ``_is_paused``: while we wait for a
response the association's own thread must not take it from the queue). pyproject pins
pynetdicom to 3.0.x for this; ``tests/dimse/test_sender.py`` exercises each of them.
"""

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from pynetdicom import AE, build_context
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext

from app.config import DimseSettings
from app.dicom.filemeta import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from app.dimse.sockets import NO_DELAY
from app.dimse.tls import client_context
from app.services.aes import RemoteAe

__all__ = [
    "MAX_CONTEXTS",
    "AssociationLost",
    "DestinationRefused",
    "StoreContext",
    "associate",
    "propose_contexts",
    "send_stored",
    "sending_contexts",
]

log = logging.getLogger(__name__)

#: presentation contexts one association may carry (odd IDs 1-255, PS3.8 §9.3.2.2)
MAX_CONTEXTS: Final = 128
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
#: the syntaxes Lightbox can transcode any decodable instance into (the fallback contexts)
_FALLBACK: Final = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
#: P-DATA primitives queued for the socket before the sender waits (back-pressure)
_QUEUE_MAX: Final = 64
#: a fragment when the peer sets no maximum PDU (0: unlimited)
_UNLIMITED_FRAGMENT: Final = 1 << 20
#: PDV item overhead: item length (4), context ID (1), message control header (1)
_PDV_OVERHEAD: Final = 6
_DATASET: Final = b"\x00"
_LAST_DATASET: Final = b"\x02"


class AssociationLost(Exception):
    """The association ended (aborted, released, timed out) before a response came."""


class DestinationRefused(Exception):
    """The peer did not accept the association (rejected, unreachable, aborted)."""


@dataclass(frozen=True, slots=True)
class StoreContext:
    """An accepted presentation context we may send C-STORE requests on."""

    context_id: int
    sop_class: str
    transfer_syntax: str


def sending_contexts(assoc: Association) -> dict[tuple[str, str], StoreContext]:
    """The accepted contexts on which we act as SCU, by (SOP class, transfer syntax): on an
    association we requested, every accepted one; on one we accepted (C-GET), those whose
    SCP role the requestor took (PS3.7 §D.3.3.4)."""
    found: dict[tuple[str, str], StoreContext] = {}
    for cx in assoc.accepted_contexts:
        if cx.as_scu is not True or cx.context_id is None:
            continue
        pair = (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
        found.setdefault(pair, StoreContext(cx.context_id, *pair))
    return found


def propose_contexts(pairs: Iterable[tuple[str, str]]) -> list[PresentationContext]:
    """The presentation contexts to propose for instances of these (SOP class, stored transfer
    syntax) pairs, at most :data:`MAX_CONTEXTS`.

    Each SOP class gets a context offering Explicit and Implicit VR Little Endian (anything
    decodable can be transcoded into them), and each stored syntax but Explicit VR Little
    Endian (the fallback's first) a context of its own, so the peer accepts or refuses every
    stored syntax separately and whatever it accepts is sent as stored. When that is more than
    128, the SOP classes with the most instances keep theirs: first every class's fallback,
    then the stored syntaxes by instance count.

    >>> cxs = propose_contexts([("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.4.90")] * 2)
    >>> [(cx.abstract_syntax, cx.transfer_syntax) for cx in cxs]  # doctest: +NORMALIZE_WHITESPACE
    [('1.2.840.10008.5.1.4.1.1.2', ['1.2.840.10008.1.2.1', '1.2.840.10008.1.2']),
     ('1.2.840.10008.5.1.4.1.1.2', ['1.2.840.10008.1.2.4.90'])]
    """
    counts = Counter(pairs)
    by_class: Counter[str] = Counter()
    for (sop_class, _), n in counts.items():
        by_class[sop_class] += n
    classes = [sop_class for sop_class, _ in by_class.most_common(MAX_CONTEXTS)]
    contexts = [build_context(sop_class, list(_FALLBACK)) for sop_class in classes]
    kept = set(classes)
    for (sop_class, syntax), _ in counts.most_common():
        if len(contexts) >= MAX_CONTEXTS:
            break
        if sop_class in kept and syntax != EXPLICIT_VR_LITTLE_ENDIAN:
            contexts.append(build_context(sop_class, [syntax]))
    return contexts


def associate(
    ae_title: str,
    remote: RemoteAe,
    contexts: list[PresentationContext],
    settings: DimseSettings,
) -> Association:
    """Open an association to ``remote`` as ``ae_title``, proposing ``contexts`` (over TLS when
    the peer is marked so); :class:`DestinationRefused` when it is not established."""
    ae = AE(ae_title=ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    ae.requested_contexts = contexts
    tls = (client_context(settings), remote.host) if remote.tls else None
    assoc = ae.associate(
        remote.host,
        remote.port,
        ae_title=remote.ae_title,
        max_pdu=settings.max_pdu,
        tls_args=tls,
        evt_handlers=[NO_DELAY],
    )
    if assoc.is_established:
        return assoc
    # pynetdicom leaves a failed request's socket open (its own C-MOVE code closes it too)
    socket = getattr(assoc.dul, "socket", None)
    if socket is not None:
        socket.close()
    if assoc.is_rejected:
        raise DestinationRefused(f"{remote.ae_title} rejected the association")
    raise DestinationRefused(
        f"no association with {remote.ae_title} at {remote.host}:{remote.port} "
        "(unreachable, or aborted)"
    )


@contextmanager
def _exclusive(assoc: Association) -> Iterator[None]:
    """On an association we requested, pause its reactor thread while we send and wait for
    the response (as ``send_c_store`` does); on one we accepted we already run in it."""
    if not assoc.is_requestor:
        yield
        return
    assoc._reactor_checkpoint.clear()
    try:
        while not assoc._is_paused:
            if not assoc.is_alive() or not assoc.is_established:
                raise AssociationLost("the association ended")
            time.sleep(0.0001)
        yield
    finally:
        assoc._reactor_checkpoint.set()


def _wait_for_room(assoc: Association) -> None:
    queue = assoc.dul.to_provider_queue
    while queue.qsize() > _QUEUE_MAX:
        if not assoc.is_established:
            raise AssociationLost("the association ended while sending")
        time.sleep(0.0005)


def _fragments(chunks: Iterable[bytes], size: int) -> Iterator[tuple[bytes, bool]]:
    """``chunks`` cut into fragments of at most ``size`` bytes, each with whether it is the
    last (a message's last fragment is marked, PS3.8 §E.2)."""
    pending: bytes | None = None
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), size):
            if pending is not None:
                yield pending, False
            pending = bytes(view[start : start + size])
    yield (pending if pending is not None else b""), True


def send_stored(
    assoc: Association,
    context: StoreContext,
    sop_uid: str,
    dataset: Iterable[bytes],
    *,
    message_id: int,
    move_originator: tuple[str, int] | None = None,
) -> int:
    """Send one C-STORE request whose data set is ``dataset`` (encoded in the context's
    transfer syntax, in chunks) and return the response's status (an ``int``).

    ``move_originator`` is the C-MOVE's requestor AE title and message ID (0000,1030/1031).
    :class:`AssociationLost` when the association ends, no response comes within the DIMSE
    timeout, or ``dataset`` fails while being sent (the association is then aborted: a message
    cannot be taken back half-sent).
    """
    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = context.sop_class
    request.AffectedSOPInstanceUID = sop_uid
    request.Priority = 0x0002  # low (PS3.7 §9.1.1.1.7), what DCMTK sends
    if move_originator is not None:
        request.MoveOriginatorApplicationEntityTitle = move_originator[0]
        request.MoveOriginatorMessageID = move_originator[1]
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    message.command_set.CommandDataSetType = 0x0001  # a data set follows (PS3.7 §E.1)
    maximum = assoc.dimse.maximum_pdu_size
    size = maximum - _PDV_OVERHEAD if maximum else _UNLIMITED_FRAGMENT
    cx_id = context.context_id
    if not assoc.is_established:
        raise AssociationLost("the association ended")
    with _exclusive(assoc):
        for pdata in message.encode_msg(cx_id, maximum):
            assoc.dul.send_pdu(pdata)
        try:
            for fragment, last in _fragments(dataset, size):
                _wait_for_room(assoc)
                pdata = P_DATA()
                header = _LAST_DATASET if last else _DATASET
                pdata.presentation_data_value_list.append((cx_id, header + fragment))
                assoc.dul.send_pdu(pdata)
        except AssociationLost:
            raise
        except Exception as exc:
            log.error("C-STORE of %s stopped half-sent (%s): aborting", sop_uid, exc)
            _abort(assoc)
            raise AssociationLost(f"the instance could not be read: {exc}") from exc
        return _response(assoc, message_id)


def _abort(assoc: Association) -> None:
    """Abort ``assoc``: waiting for it on one we requested; not on one we accepted, whose own
    thread we run in (it would wait for itself)."""
    assoc.abort(block=assoc.is_requestor)


def _response(assoc: Association, message_id: int) -> int:
    while True:
        _, response = assoc.dimse.get_msg(block=True)
        if response is None:
            if assoc.is_established:
                _abort(assoc)  # no response within the DIMSE timeout
            raise AssociationLost("no C-STORE response")
        if getattr(response, "MessageIDBeingRespondedTo", None) == message_id:
            status = getattr(response, "Status", None)
            if status is None:
                raise AssociationLost("a C-STORE response without a status")
            return int(status)
        log.warning("unexpected DIMSE message while waiting for a C-STORE response: %s", response)

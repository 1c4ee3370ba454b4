"""Where the C-STORE sub-operations of a C-GET or C-MOVE go (PS3.4 §C.4.2.3, §C.4.3.3;
DIMSE-11..13): the C-GET requestor's own association (:class:`GetRequestor`), or an association
Lightbox opens to the C-MOVE destination (:class:`MoveDestination`).

Reconnect policy of a C-MOVE destination: when it refuses the association, drops it, or stops
answering within the DIMSE timeout, the sub-operation under way fails and the next one opens a
new association; after :data:`MAX_ATTEMPTS` attempts in a row without an instance delivered the
destination is given up (``given_up``), and the caller fails the sub-operations left at once.
So a destination that drops one association loses one instance; one that is down costs three
connection attempts, not one per instance.
"""

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from pynetdicom.association import Association

from app.dicom.part10 import read_file_meta
from app.dicom.status import QueryRetrieveStatus
from app.dimse.context import DimseContext
from app.dimse.sender import (
    AssociationLost,
    DestinationRefused,
    StoreContext,
    associate,
    propose_contexts,
    send_stored,
    sending_contexts,
)
from app.services.aes import RemoteAe

__all__ = [
    "MAX_ATTEMPTS",
    "Destination",
    "GetRequestor",
    "MoveDestination",
    "Outgoing",
    "send_part",
]

log = logging.getLogger(__name__)

#: association attempts in a row, without an instance delivered, before a C-MOVE destination
#: is given up
MAX_ATTEMPTS: Final = 3


class Destination:
    """Where the C-STOREs go: the association and the contexts to send them on."""

    def contexts(self) -> dict[tuple[str, str], StoreContext]:
        raise NotImplementedError

    def connect(self) -> bool:
        """Whether there is an association to send on (C-MOVE: opened when needed)."""
        return True

    given_up = False

    def send(self, instance: "Outgoing", chunks: Iterator[bytes]) -> int:
        """Send one instance (a PS3.10 file, in chunks); its C-STORE status.
        :class:`AssociationLost` when the association ends."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the association (C-MOVE)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What the index says of an instance being sent: the C-STORE's Affected SOP Class and
    Instance UIDs (a File Meta group may disagree with its data set; the index has the data
    set's)."""

    sop_class_uid: str
    sop_uid: str


def send_part(
    assoc: Association,
    contexts: dict[tuple[str, str], StoreContext],
    instance: Outgoing,
    chunks: Iterator[bytes],
    message_id: int,
    originator: tuple[str, int] | None,
) -> int:
    """Send one PS3.10 file's data set (its File Meta read from the first chunks: the transfer
    syntax, where the data set starts) on the context of its SOP class and syntax."""
    head = b""
    meta = None
    for chunk in chunks:
        head += chunk
        meta = read_file_meta(head)
        if meta is not None:
            break
    else:
        meta = read_file_meta(head, whole=True)
    assert meta is not None
    sop_class = instance.sop_class_uid or meta.sop_class_uid
    context = contexts.get((sop_class, meta.transfer_syntax))
    if context is None:  # the service planned a syntax no context takes: not sent
        log.error("no context for %s in %s", sop_class, meta.transfer_syntax)
        return int(QueryRetrieveStatus.UNABLE_TO_PROCESS)
    first = head[meta.dataset_offset :]
    return send_stored(
        assoc,
        context,
        instance.sop_uid or meta.sop_uid,
        itertools.chain((first,), chunks),
        message_id=message_id,
        move_originator=originator,
    )


class GetRequestor(Destination):
    """C-GET: the requestor's association, its contexts with our SCU role."""

    def __init__(self, assoc: Association, request_id: int) -> None:
        self._assoc = assoc
        self._contexts = sending_contexts(assoc)
        self._ids = itertools.count(1)
        self._request_id = request_id

    def contexts(self) -> dict[tuple[str, str], StoreContext]:
        return self._contexts

    def send(self, instance: Outgoing, chunks: Iterator[bytes]) -> int:
        # message IDs distinct from the C-GET's own (PS3.7 §9.1.3.1: unique per association)
        message_id = (self._request_id + next(self._ids)) % 0x10000 or 1
        return send_part(self._assoc, self._contexts, instance, chunks, message_id, None)


class MoveDestination(Destination):
    """C-MOVE: an association to the destination, reopened as the reconnect policy says."""

    def __init__(
        self,
        ctx: DimseContext,
        destination: RemoteAe,
        pairs: Iterable[tuple[str, str]],
        originator: tuple[str, int],
    ) -> None:
        self._ctx = ctx
        self._destination = destination
        self._proposed = propose_contexts(pairs)
        self._originator = originator
        self._assoc: Association | None = None
        self._contexts: dict[tuple[str, str], StoreContext] = {}
        self._ids = itertools.count(1)
        #: association attempts since the last instance delivered
        self._attempts = 0

    def connect(self) -> bool:
        """An established association to the destination (opened when needed); False once
        the destination has been given up."""
        if self._assoc is not None and self._assoc.is_established:
            return True
        self._release()
        while not self.given_up:
            self._attempts += 1
            try:
                self._assoc = associate(
                    self._ctx.settings.dimse.ae_title,
                    self._destination,
                    self._proposed,
                    self._ctx.settings.dimse,
                )
            except DestinationRefused as exc:
                log.warning("C-MOVE: %s (attempt %d)", exc, self._attempts)
                if self._attempts >= MAX_ATTEMPTS:
                    self.given_up = True
                return False
            self._contexts = sending_contexts(self._assoc)
            return True
        return False

    def contexts(self) -> dict[tuple[str, str], StoreContext]:
        return self._contexts

    def send(self, instance: Outgoing, chunks: Iterator[bytes]) -> int:
        assert self._assoc is not None
        message_id = next(self._ids) % 0x10000 or 1
        try:
            status = send_part(
                self._assoc, self._contexts, instance, chunks, message_id, self._originator
            )
        except AssociationLost:
            if self._attempts >= MAX_ATTEMPTS:
                self.given_up = True
            raise
        self._attempts = 0
        return status

    def _release(self) -> None:
        assoc, self._assoc = self._assoc, None
        if assoc is None:
            return
        if assoc.is_established:
            assoc.release()
        else:
            assoc.abort()

    def close(self) -> None:
        self._release()

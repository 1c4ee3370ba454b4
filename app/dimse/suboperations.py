"""The C-MOVE and C-GET responses and their sub-operation counts, without pynetdicom's cap on
the number of instances (PS3.4 §C.4.2.1.4-.9, §C.4.3.1.4; PS3.7 §9.1.3-4; DIMSE-11..13).

pynetdicom's own C-GET/C-MOVE service expects the handler to yield the number of
sub-operations first and refuses more than 65,535 (status 0xC416 / 0xC516; pynetdicom issue
982): the Number of Remaining/Completed/Failed/Warning Sub-operations are US values
(0000,1020-1023). It also sends each instance through ``send_c_store`` as a pydicom Dataset and
opens the C-MOVE association with the AE's fixed requested contexts. A patient with 100,000
instances must still move completely, as stored, on contexts fitted to what is sent; so
:class:`~app.dimse.qr_service.QueryRetrieveService` takes over the two SCP methods and hands
the request to our handler (``app.dimse.retrieve``) with an :class:`Exchange`, which sends the
responses.

The counts on the wire (PS3.4 leaves more than 65,535 sub-operations undefined):

* Lightbox counts exactly (Python integers) and reports each count as itself while it fits in
  US, else as 65,535: "at least 65,535". A 100,000-instance move starts with Remaining 65,535,
  Remaining counts down once fewer than 65,535 are left, Completed climbs to 65,535 and stays.
  Pending responses are sent after every sub-operation whatever the counts: they show progress
  and keep the requestor's DIMSE timeout from expiring (the alternative pynetdicom's
  maintainers considered, sending none above 65,535, would leave a long move silent).
* The final status is always exact: Success only when every sub-operation succeeded, 0xB000
  when some failed or warned, 0xA702 when all failed, 0xFE00 after a C-CANCEL; the Failed SOP
  Instance UID List (0008,0058) names every failed instance (in Explicit VR, where a UI value
  holds at most 65,534 bytes, as many as fit; Implicit VR, the usual Query/Retrieve syntax,
  holds them all).

:attr:`Exchange.count_limit` is that bound (65,535); tests lower it to run the saturating path
on a few instances.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Final

from pydicom import Dataset
from pydicom.uid import UID
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.dsutils import encode
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import QueryRetrieveServiceClass

from app.dicom.status import QueryRetrieveStatus

__all__ = ["US_MAX", "Counts", "Exchange", "Runner"]

log = logging.getLogger(__name__)

#: the largest US value (PS3.5 Table 6.2-1): the most a count can say
US_MAX: Final = 0xFFFF
#: C-STORE warnings outside 0xBxxx (PS3.7 C.4: attribute list error, value out of range)
_STORE_WARNINGS: Final = frozenset({0x0001, 0x0107, 0x0116})


@dataclass(slots=True)
class Counts:
    """The sub-operations of one C-MOVE or C-GET, counted exactly."""

    remaining: int = 0
    completed: int = 0
    failed: int = 0
    warning: int = 0
    #: the SOP Instance UIDs of the failed sub-operations, in order (PS3.4 §C.4.2.1.9)
    failed_uids: list[str] = field(default_factory=list)

    def fail(self, sop_uid: str) -> None:
        self.remaining = max(0, self.remaining - 1)
        self.failed += 1
        self.failed_uids.append(sop_uid)

    def done(self, status: int, sop_uid: str) -> bool:
        """Count a C-STORE response's status; whether the instance was delivered (Success, or
        a Warning: PS3.4 Table B.2-1, PS3.7 Annex C)."""
        if status == 0x0000:
            self.remaining = max(0, self.remaining - 1)
            self.completed += 1
            return True
        if status in _STORE_WARNINGS or 0xB000 <= status <= 0xBFFF:
            self.remaining = max(0, self.remaining - 1)
            self.warning += 1
            return True
        self.fail(sop_uid)
        return False

    def final_status(self, cancelled: bool) -> int:
        """PS3.4 §C.4.2.3.1: Cancel; Success; Warning when some failed or warned; Failure
        (0xA702) when every one failed."""
        if cancelled:
            return QueryRetrieveStatus.CANCEL
        if not self.failed and not self.warning:
            return QueryRetrieveStatus.SUCCESS
        if not self.completed and not self.warning:
            return QueryRetrieveStatus.UNABLE_TO_PERFORM_SUBOPERATIONS
        return QueryRetrieveStatus.SUBOPERATIONS_WARNING


class Exchange:
    """The responses to one C-MOVE or C-GET request, sent on its association."""

    #: the most a count says on the wire (US); see the module docstring
    count_limit: int = US_MAX

    def __init__(
        self,
        service: QueryRetrieveServiceClass,
        request: C_GET | C_MOVE,
        context: PresentationContext,
    ) -> None:
        self._service = service
        self.request = request
        self._context = context
        self._cancelled = False

    @property
    def assoc(self) -> Any:
        """The association the request came on (C-GET sends its C-STOREs on it)."""
        return self._service.assoc

    @property
    def alive(self) -> bool:
        """Whether responses can still be sent (the requestor has not gone)."""
        acse = self.assoc.acse
        return bool(
            self.assoc.is_established and not acse.is_aborted() and not acse.is_release_requested()
        )

    def cancelled(self) -> bool:
        """Whether the requestor sent a C-CANCEL for this request (it stays so)."""
        if not self._cancelled and self._service.is_cancelled(self.request.MessageID or 0):
            self._cancelled = True
        return self._cancelled

    def _response(self, status: int) -> C_GET | C_MOVE:
        response = C_GET() if isinstance(self.request, C_GET) else C_MOVE()
        response.MessageIDBeingRespondedTo = self.request.MessageID
        response.AffectedSOPClassUID = self.request.AffectedSOPClassUID
        response.Status = status
        return response

    def _wire(self, count: int) -> int:
        return min(count, self.count_limit)

    def pending(self, counts: Counts) -> None:
        """A Pending response with the four counts (PS3.4 §C.4.2.1.5-.8)."""
        response = self._response(QueryRetrieveStatus.PENDING)
        response.NumberOfRemainingSuboperations = self._wire(counts.remaining)
        response.NumberOfCompletedSuboperations = self._wire(counts.completed)
        response.NumberOfFailedSuboperations = self._wire(counts.failed)
        response.NumberOfWarningSuboperations = self._wire(counts.warning)
        self._send(response)

    def final(self, counts: Counts, status: int) -> None:
        """The final response: the counts, Remaining too after a Cancel, and the Failed SOP
        Instance UID List unless everything succeeded."""
        response = self._response(status)
        response.NumberOfCompletedSuboperations = self._wire(counts.completed)
        response.NumberOfFailedSuboperations = self._wire(counts.failed)
        response.NumberOfWarningSuboperations = self._wire(counts.warning)
        if status == QueryRetrieveStatus.CANCEL:
            response.NumberOfRemainingSuboperations = self._wire(counts.remaining)
        if counts.failed_uids:
            response.Identifier = self._identifier(counts.failed_uids)
        self._send(response)

    def refuse(self, status: Dataset | int) -> None:
        """A final failure before any sub-operation (unknown destination, bad identifier),
        with its ErrorComment and OffendingElement when ``status`` is a status data set."""
        code = int(status.Status) if isinstance(status, Dataset) else int(status)
        response = self._response(code)
        if isinstance(status, Dataset):
            for elem in status:
                if elem.keyword in ("ErrorComment", "OffendingElement"):
                    setattr(response, elem.keyword, elem.value)
        self._send(response)

    def _identifier(self, failed: Sequence[str]) -> BytesIO:
        syntax = UID(self._context.transfer_syntax[0])
        uids = list(failed)
        if not syntax.is_implicit_VR:
            uids = _fitting(uids)
        ds = Dataset()
        ds.FailedSOPInstanceUIDList = uids
        data = encode(ds, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
        return BytesIO(data or b"")

    def _send(self, response: C_GET | C_MOVE) -> None:
        if self.alive:
            self._service.dimse.send_msg(response, int(self._context.context_id or 0))


def _fitting(uids: list[str]) -> list[str]:
    """As many UIDs as an Explicit VR UI value holds (a 16-bit length: 65,534 bytes)."""
    total = 0
    for n, uid in enumerate(uids):
        total += len(uid) + 1
        if total > 0xFFFE:
            log.warning("Failed SOP Instance UID List cut to %d of %d UIDs", n, len(uids))
            return uids[:n]
    return uids


#: what our C-GET/C-MOVE handlers return: run the request, sending through the exchange
Runner = Callable[[Exchange], None]

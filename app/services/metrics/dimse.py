"""DIMSE associations and operations (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET), for the DIMSE
front end to count (``app.dimse``)."""

from typing import Final, Literal

from prometheus_client import Counter, Histogram

__all__ = [
    "AssociationOutcome",
    "OperationStatus",
    "dimse_association",
    "dimse_operation",
    "status_category",
]

AssociationOutcome = Literal["accepted", "rejected", "released", "aborted"]
#: the status category of a DIMSE response (PS3.7 Annex C): its code is not a label (there are
#: hundreds), its class is
OperationStatus = Literal["success", "warning", "failure", "cancel"]

_ASSOCIATIONS: Final = Counter(
    "lightbox_dimse_associations",
    "DIMSE associations: accepted or rejected when requested, then released or aborted",
    ("outcome",),
)
_OPERATIONS: Final = Counter(
    "lightbox_dimse_operations",
    "DIMSE requests answered, by operation (C-STORE, C-FIND, ...) and status category",
    ("operation", "status"),
)
_DURATION: Final = Histogram(
    "lightbox_dimse_operation_duration_seconds",
    "how long DIMSE requests took, by operation",
    ("operation",),
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
)


def dimse_association(outcome: AssociationOutcome) -> None:
    """Count an association event."""
    _ASSOCIATIONS.labels(outcome).inc()


def dimse_operation(operation: str, status: OperationStatus, seconds: float) -> None:
    """Count one DIMSE request (``operation``: ``C-STORE``, ``C-FIND``, ...) and its duration."""
    _OPERATIONS.labels(operation, status).inc()
    _DURATION.labels(operation).observe(seconds)


def status_category(code: int) -> OperationStatus:
    """The category of a DIMSE status code (PS3.7 Annex C).

    >>> [status_category(c) for c in (0x0000, 0xB000, 0x0107, 0xFE00, 0xA700, 0xC000, 0x0122)]
    ['success', 'warning', 'warning', 'cancel', 'failure', 'failure', 'failure']
    """
    if code == 0x0000:
        return "success"
    if code == 0xFE00:
        return "cancel"
    if code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
        return "warning"
    return "failure"

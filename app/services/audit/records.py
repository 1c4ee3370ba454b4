"""An audit event as a front end reports it (:class:`AuditRecord`), and its outcome values."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.dicom.text import storable as storable_text

__all__ = ["AuditRecord", "Outcome", "storable"]


class Outcome:
    """``outcome`` values (mapped to DICOM EventOutcomeIndicator on export)."""

    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"


@dataclass(slots=True)
class AuditRecord:
    """One audited transaction, as a front end reports it.

    Not a frozen dataclass: one is made per request, and a frozen one's ``__init__`` (a
    ``object.__setattr__`` per field) cost three times as much. Nothing changes a record once it
    is queued.
    """

    action: str
    outcome: str
    status: int | None = None
    actor: str | None = None
    client_id: str | None = None
    source: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    instance_uid: str | None = None
    patient_id: str | None = None
    count: int | None = None
    request_id: str | None = None
    detail: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: the requests this record stands for when :func:`aggregate` merged several (else None)
    requests: int | None = None
    #: the journal rows of the write this record reports (:class:`WriteAudit`): deleted in the
    #: transaction that chains it (not content: never hashed)
    supersedes: tuple[int, ...] = ()
    #: the journal row this record was read from: chained only by the writer that deletes it
    journal_id: int | None = None


def storable(value: Any) -> Any:
    """``value`` as a row can store it (text through :func:`~app.dicom.text.storable`)."""
    return storable_text(value) if isinstance(value, str) else value

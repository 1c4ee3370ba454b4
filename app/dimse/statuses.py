"""Response statuses of the Query/Retrieve handlers, as pynetdicom sends them: a status alone, or
a status data set with ErrorComment (0000,0902) and OffendingElement (0000,0901) (PS3.7 Annex C).

An error's status comes from the error itself (:class:`~app.errors.LightboxError`'s
``dimse_status``, :class:`~app.dicom.dimse_query.InvalidIdentifier`'s offending tags); anything
unexpected is "unable to process" with a generic comment (never an exception's text: it may name
a path or a value).
"""

import logging

from pydicom.dataset import Dataset

from app.dicom.dimse_query import InvalidIdentifier
from app.dicom.status import QueryRetrieveStatus
from app.errors import LightboxError, Unavailable
from app.services.audit import Outcome

__all__ = ["error_status", "outcome_of", "status_dataset"]

log = logging.getLogger(__name__)

#: ErrorComment is LO: 64 characters at most
_COMMENT_MAX = 64
#: final statuses an audit row calls a success: the operation ran to its end or as far as the
#: peer wanted it to (failed sub-operations are counted in the row's detail)
_SUCCESSES = frozenset(
    {
        QueryRetrieveStatus.SUCCESS,
        QueryRetrieveStatus.SUBOPERATIONS_WARNING,
        QueryRetrieveStatus.CANCEL,
    }
)


def outcome_of(status: int) -> str:
    """The audit outcome of a final status: success for Success, Warning and Cancel."""
    return Outcome.SUCCESS if status in _SUCCESSES else Outcome.FAILURE


def status_dataset(
    status: int, comment: str | None = None, offending: tuple[int, ...] = ()
) -> Dataset:
    """A status with its ErrorComment and OffendingElement (pynetdicom copies them into the
    response's command set)."""
    ds = Dataset()
    ds.Status = status
    if comment:
        ds.ErrorComment = comment if len(comment) <= _COMMENT_MAX else comment[:61] + "..."
    if offending:
        ds.OffendingElement = list(offending)
    return ds


def error_status(exc: BaseException, *, operation: str) -> Dataset:
    """The failure response for ``exc``, raised while serving ``operation`` (``C-FIND``, ...)."""
    if isinstance(exc, InvalidIdentifier):
        return status_dataset(int(exc.dimse_status), exc.comment, exc.offending)
    if isinstance(exc, Unavailable):
        return status_dataset(QueryRetrieveStatus.OUT_OF_RESOURCES, exc.message)
    if isinstance(exc, LightboxError):
        status = int(exc.dimse_status)
        if not 0xC000 <= status <= 0xCFFF and status >> 8 not in (0xA7, 0xA9):
            status = QueryRetrieveStatus.UNABLE_TO_PROCESS
        return status_dataset(status, exc.message)
    log.exception("%s failed", operation)
    return status_dataset(QueryRetrieveStatus.UNABLE_TO_PROCESS, f"{operation} failed")

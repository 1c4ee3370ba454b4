"""The Query/Retrieve information models, their SOP classes and unique keys, and the errors of
an identifier that cannot be answered (PS3.4 §C.4, §C.6; PS3.7 Annex C)."""

from collections.abc import Sequence
from enum import StrEnum
from typing import Final

from app.dicom.attributes import Level
from app.dicom.status import Status
from app.errors import BadRequest

__all__ = [
    "QUERY_RETRIEVE_LEVEL",
    "SOP_CLASSES",
    "SPECIFIC_CHARACTER_SET",
    "UNIQUE_KEYS",
    "IdentifierMismatch",
    "InvalidIdentifier",
    "Model",
    "Service",
]


class Model(StrEnum):
    """The Query/Retrieve information models (PS3.4 §C.6)."""

    PATIENT_ROOT = "Patient Root"
    STUDY_ROOT = "Study Root"

    @property
    def levels(self) -> tuple[Level, ...]:
        """The model's levels, top down (PS3.4 §C.6.1.1, §C.6.2.1)."""
        top = (Level.PATIENT,) if self is Model.PATIENT_ROOT else ()
        return (*top, Level.STUDY, Level.SERIES, Level.INSTANCE)


class Service(StrEnum):
    """The DIMSE-C operation a Query/Retrieve SOP class is for."""

    FIND = "C-FIND"
    MOVE = "C-MOVE"
    GET = "C-GET"


#: the Query/Retrieve SOP classes (PS3.4 Table C.4-1; DIMSE-07, 11, 13)
SOP_CLASSES: Final[dict[str, tuple[Model, Service]]] = {
    "1.2.840.10008.5.1.4.1.2.1.1": (Model.PATIENT_ROOT, Service.FIND),
    "1.2.840.10008.5.1.4.1.2.1.2": (Model.PATIENT_ROOT, Service.MOVE),
    "1.2.840.10008.5.1.4.1.2.1.3": (Model.PATIENT_ROOT, Service.GET),
    "1.2.840.10008.5.1.4.1.2.2.1": (Model.STUDY_ROOT, Service.FIND),
    "1.2.840.10008.5.1.4.1.2.2.2": (Model.STUDY_ROOT, Service.MOVE),
    "1.2.840.10008.5.1.4.1.2.2.3": (Model.STUDY_ROOT, Service.GET),
}

#: the unique key of each level (PS3.4 §C.6.1.1.2-5, §C.6.2.1.2-4)
UNIQUE_KEYS: Final[dict[Level, int]] = {
    Level.PATIENT: 0x00100020,  # PatientID
    Level.STUDY: 0x0020000D,  # StudyInstanceUID
    Level.SERIES: 0x0020000E,  # SeriesInstanceUID
    Level.INSTANCE: 0x00080018,  # SOPInstanceUID
}
#: (0008,0052) QueryRetrieveLevel
QUERY_RETRIEVE_LEVEL: Final = 0x00080052
#: (0008,0005) SpecificCharacterSet
SPECIFIC_CHARACTER_SET: Final = 0x00080005
#: the longest ErrorComment (0000,0902) (LO, PS3.7 Annex C)
_COMMENT_MAX: Final = 64


class InvalidIdentifier(BadRequest):
    """An identifier whose values cannot be processed (0xC000, PS3.4 §C.4.1.1.4)."""

    def __init__(self, message: str, offending: Sequence[int] = ()) -> None:
        super().__init__(message)
        #: OffendingElement (0000,0901): the tags at fault
        self.offending = tuple(offending)

    @property
    def comment(self) -> str:
        """The message as an ErrorComment (0000,0902): at most 64 characters."""
        if len(self.message) <= _COMMENT_MAX:
            return self.message
        return self.message[: _COMMENT_MAX - 3] + "..."


class IdentifierMismatch(InvalidIdentifier):
    """An identifier that does not fit its SOP class: no valid QueryRetrieveLevel, a key of a
    lower level, a missing unique key of a level above (0xA900, "Identifier does not match
    SOP Class")."""

    dimse_status = Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS

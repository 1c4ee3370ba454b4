"""Which top-level attributes belong to which query/retrieve level (PS3.4 §C.6.1.1, PS3.18 §10.6).

The catalog is a data table of :class:`Attribute` rows (tag, keyword, level) built from the IOD
modules that live at each level of the Patient/Study/Series/Instance hierarchy:

* patient (PS3.3 §C.7.1.1 Patient module): **every** element of group 0010, plus a few
  patient-module attributes outside it;
* study (PS3.3 §C.7.2.1 General Study, §C.7.2.2 Patient Study);
* series (PS3.3 §C.7.3.1 General Series);
* instance (PS3.3 §C.12.1 SOP Common, §C.7.6.1 General Image, §C.7.6.3 Image Pixel), plus the
  QIDO-23 instance return keys.

Patient attributes are denormalised into the study (DESIGN.md §3), so the study-level DICOM JSON
object (QIDO-21) holds both. SpecificCharacterSet (0008,0005) and TimezoneOffsetFromUTC
(0008,0201) describe how every level's values are encoded and so belong to all levels (JSON-10).
QIDO work extends the table; matching and indexing decisions hang off it later.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "ALL_LEVELS_TAGS",
    "ATTRIBUTES",
    "INSTANCE_TAGS",
    "SERIES_TAGS",
    "STUDY_TAGS",
    "Attribute",
    "Level",
    "by_keyword",
    "by_tag",
    "in_study_object",
    "level_of",
]


class Level(StrEnum):
    """Query/retrieve levels (PS3.4 §C.3)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    INSTANCE = "IMAGE"  # PS3.4 §C.6.1.1.1: QueryRetrieveLevel "IMAGE"


@dataclass(frozen=True, slots=True)
class Attribute:
    """One row of the catalog: a top-level attribute and the level it belongs to."""

    tag: int
    keyword: str
    level: Level


_P, _ST, _SE, _I = Level.PATIENT, Level.STUDY, Level.SERIES, Level.INSTANCE

#: attributes present at every level (they describe the encoding of the values, JSON-10)
ALL_LEVELS_TAGS: Final = frozenset({0x00080005, 0x00080201})

ATTRIBUTES: Final[tuple[Attribute, ...]] = tuple(
    Attribute(tag, keyword, level)
    for tag, keyword, level in (
        # encoding of every level's values; listed with the study, used at all levels
        (0x00080005, "SpecificCharacterSet", _ST),
        (0x00080201, "TimezoneOffsetFromUTC", _ST),
        # Patient module (PS3.3 §C.7.1.1); the rest of group 0010 is patient level by rule
        (0x00100010, "PatientName", _P),
        (0x00100020, "PatientID", _P),
        (0x00100021, "IssuerOfPatientID", _P),
        (0x00100024, "IssuerOfPatientIDQualifiersSequence", _P),
        (0x00100030, "PatientBirthDate", _P),
        (0x00100032, "PatientBirthTime", _P),
        (0x00100040, "PatientSex", _P),
        (0x00101000, "OtherPatientIDs", _P),
        (0x00101001, "OtherPatientNames", _P),
        (0x00101002, "OtherPatientIDsSequence", _P),
        (0x00101010, "PatientAge", _P),
        (0x00101020, "PatientSize", _P),
        (0x00101030, "PatientWeight", _P),
        (0x00102160, "EthnicGroup", _P),
        (0x00104000, "PatientComments", _P),
        (0x00120062, "PatientIdentityRemoved", _P),
        (0x00120063, "DeidentificationMethod", _P),
        (0x00120064, "DeidentificationMethodCodeSequence", _P),
        # General Study module (PS3.3 §C.7.2.1)
        (0x00080020, "StudyDate", _ST),
        (0x00080030, "StudyTime", _ST),
        (0x00080050, "AccessionNumber", _ST),
        (0x00080051, "IssuerOfAccessionNumberSequence", _ST),
        (0x00080090, "ReferringPhysicianName", _ST),
        (0x00080096, "ReferringPhysicianIdentificationSequence", _ST),
        (0x00081030, "StudyDescription", _ST),
        (0x00081032, "ProcedureCodeSequence", _ST),
        (0x00081048, "PhysiciansOfRecord", _ST),
        (0x00081060, "NameOfPhysiciansReadingStudy", _ST),
        (0x00081110, "ReferencedStudySequence", _ST),
        (0x0020000D, "StudyInstanceUID", _ST),
        (0x00200010, "StudyID", _ST),
        (0x00321034, "RequestingServiceCodeSequence", _ST),
        (0x00401012, "ReasonForPerformedProcedureCodeSequence", _ST),
        # Patient Study module (PS3.3 §C.7.2.2), outside group 0010
        (0x00081080, "AdmittingDiagnosesDescription", _ST),
        (0x00081084, "AdmittingDiagnosesCodeSequence", _ST),
        (0x00380010, "AdmissionID", _ST),
        (0x00380014, "IssuerOfAdmissionIDSequence", _ST),
        (0x00380060, "ServiceEpisodeID", _ST),
        (0x00380062, "ServiceEpisodeDescription", _ST),
        (0x00380500, "PatientState", _ST),
        # General Series module (PS3.3 §C.7.3.1)
        (0x00080021, "SeriesDate", _SE),
        (0x00080031, "SeriesTime", _SE),
        (0x00080060, "Modality", _SE),
        (0x0008103E, "SeriesDescription", _SE),
        (0x0008103F, "SeriesDescriptionCodeSequence", _SE),
        (0x00081050, "PerformingPhysicianName", _SE),
        (0x00081070, "OperatorsName", _SE),
        (0x00081111, "ReferencedPerformedProcedureStepSequence", _SE),
        (0x00081250, "RelatedSeriesSequence", _SE),
        (0x00180015, "BodyPartExamined", _SE),
        (0x00181030, "ProtocolName", _SE),
        (0x00185100, "PatientPosition", _SE),
        (0x0020000E, "SeriesInstanceUID", _SE),
        (0x00200011, "SeriesNumber", _SE),
        (0x00200060, "Laterality", _SE),
        (0x00400244, "PerformedProcedureStepStartDate", _SE),
        (0x00400245, "PerformedProcedureStepStartTime", _SE),
        (0x00400253, "PerformedProcedureStepID", _SE),
        (0x00400254, "PerformedProcedureStepDescription", _SE),
        (0x00400260, "PerformedProtocolCodeSequence", _SE),
        (0x00400275, "RequestAttributesSequence", _SE),
        # SOP Common (PS3.3 §C.12.1), General Image (§C.7.6.1), Image Pixel (§C.7.6.3) and the
        # QIDO-23 instance keys
        (0x00080008, "ImageType", _I),
        (0x00080012, "InstanceCreationDate", _I),
        (0x00080013, "InstanceCreationTime", _I),
        (0x00080016, "SOPClassUID", _I),
        (0x00080018, "SOPInstanceUID", _I),
        (0x00080022, "AcquisitionDate", _I),
        (0x00080023, "ContentDate", _I),
        (0x0008002A, "AcquisitionDateTime", _I),
        (0x00080032, "AcquisitionTime", _I),
        (0x00080033, "ContentTime", _I),
        (0x00200012, "AcquisitionNumber", _I),
        (0x00200013, "InstanceNumber", _I),
        (0x00200020, "PatientOrientation", _I),
        (0x00280002, "SamplesPerPixel", _I),
        (0x00280004, "PhotometricInterpretation", _I),
        (0x00280008, "NumberOfFrames", _I),
        (0x00280010, "Rows", _I),
        (0x00280011, "Columns", _I),
        (0x00280100, "BitsAllocated", _I),
        (0x00280101, "BitsStored", _I),
        (0x00280103, "PixelRepresentation", _I),
        (0x00700080, "ContentLabel", _I),
        (0x00700081, "ContentDescription", _I),
        (0x0040A043, "ConceptNameCodeSequence", _I),
        (0x0040A491, "CompletionFlag", _I),
        (0x0040A493, "VerificationFlag", _I),
    )
)

_BY_TAG: Final = {a.tag: a for a in ATTRIBUTES}
_BY_KEYWORD: Final = {a.keyword: a for a in ATTRIBUTES}


def by_tag(tag: int) -> Attribute | None:
    """The catalog row of ``tag``, or ``None`` if it is not in the catalog.

    >>> by_tag(0x0020000D)
    Attribute(tag=2097165, keyword='StudyInstanceUID', level=<Level.STUDY: 'STUDY'>)
    """
    return _BY_TAG.get(tag)


def by_keyword(keyword: str) -> Attribute | None:
    """The catalog row of a PS3.6 keyword, or ``None``.

    >>> by_keyword("Modality").level
    <Level.SERIES: 'SERIES'>
    """
    return _BY_KEYWORD.get(keyword)


def level_of(tag: int) -> Level | None:
    """The level of a top-level attribute; all of group 0010 is patient level (PS3.3 §C.7.1.1).

    >>> level_of(0x00102203)  # PatientSexNeutered, not listed in the catalog
    <Level.PATIENT: 'PATIENT'>
    >>> level_of(0x00181030), level_of(0x00280030)
    (<Level.SERIES: 'SERIES'>, None)
    """
    row = _BY_TAG.get(tag)
    if row is not None:
        return row.level
    if tag >> 16 == 0x0010 and tag & 0xFFFF:
        return Level.PATIENT
    return None


def _tags(*levels: Level) -> frozenset[int]:
    return frozenset(a.tag for a in ATTRIBUTES if a.level in levels) | ALL_LEVELS_TAGS


#: top-level tags of the study-level DICOM JSON object (patient + study, QIDO-21); group 0010
#: as a whole is added by :func:`level_of`, not listed here
STUDY_TAGS: Final = _tags(Level.PATIENT, Level.STUDY)
#: top-level tags of the series-level object (QIDO-22)
SERIES_TAGS: Final = _tags(Level.SERIES)
#: top-level tags of the instance-level object (QIDO-23)
INSTANCE_TAGS: Final = _tags(Level.INSTANCE)


def in_study_object(tag: int) -> bool:
    """Whether a top-level ``tag`` goes into the study-level object (patient or study level).

    >>> in_study_object(0x00101010), in_study_object(0x00080020), in_study_object(0x00080060)
    (True, True, False)
    """
    return tag in STUDY_TAGS or (tag >> 16 == 0x0010 and bool(tag & 0xFFFF))

"""De-identification: the PS3.15 Annex E Basic Application Level Confidentiality Profile.

Used by WADO-URI ``anonymize=yes`` (URI-04, PS3.18 §9.4.2.3). :func:`anonymize` applies the
actions of Table E.1-1 to a dataset, recursively into sequences:

* ``X`` remove, ``Z`` empty, ``D`` replace with a dummy value, for the attributes of
  :data:`ACTIONS`;
* ``U``: every UID (VR UI) that is not a registered DICOM UID (``1.2.840.10008.``) is replaced by
  a ``2.25`` UID derived from the original and a secret salt, so the same original always gets the
  same replacement (studies stay grouped) while the original cannot be recovered;
* private attributes, curves (50xx) and overlay comments/data are removed; any person name
  (VR PN) left is removed too, on the safe side;
* Clean Pixel Data Option (E.3.1): when BurnedInAnnotation is YES (or absent for SOP classes that
  usually carry burned-in text: ultrasound and secondary capture), the pixels outside the
  ultrasound regions (SequenceOfUltrasoundRegions) are blanked. Where no such knowledge of where
  the text is exists, :class:`CannotAnonymize` is raised: the caller must refuse, never send the
  original;
* PatientIdentityRemoved = YES, DeidentificationMethod and its code sequence (CID 7050: 113100
  Basic Profile, 113101 Clean Pixel Data Option) are added.
"""

import hashlib
from collections.abc import Callable
from typing import Final

import numpy as np
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pydicom.uid import UID

__all__ = ["ACTIONS", "CannotAnonymize", "anonymize", "new_uid"]


class CannotAnonymize(Exception):
    """The object cannot be de-identified (for instance burned-in text at unknown places)."""


#: Table E.1-1 actions (Basic Profile) for the attributes that are not UIDs
ACTIONS: Final[dict[str, str]] = {
    # Z: emptied (type 2 attributes)
    "PatientName": "Z",
    "PatientID": "Z",
    "PatientBirthDate": "Z",
    "PatientSex": "Z",
    "StudyDate": "Z",
    "StudyTime": "Z",
    "AccessionNumber": "Z",
    "ReferringPhysicianName": "Z",
    "StudyID": "Z",
    "ContentDate": "Z",
    "ContentTime": "Z",
    "ContentCreatorName": "Z",
    "VerifyingObserverName": "D",
    "VerifyingObserverIdentificationCodeSequence": "Z",
    "PersonName": "D",
    # X: removed
    "InstanceCreationDate": "X",
    "InstanceCreationTime": "X",
    "InstanceCreatorUID": "X",
    "SeriesDate": "X",
    "SeriesTime": "X",
    "AcquisitionDate": "X",
    "AcquisitionTime": "X",
    "AcquisitionDateTime": "X",
    "OverlayDate": "X",
    "OverlayTime": "X",
    "CurveDate": "X",
    "CurveTime": "X",
    "InstitutionName": "X",
    "InstitutionAddress": "X",
    "InstitutionalDepartmentName": "X",
    "InstitutionCodeSequence": "X",
    "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X",
    "ReferringPhysicianIdentificationSequence": "X",
    "StationName": "X",
    "StudyDescription": "X",
    "SeriesDescription": "X",
    "PhysiciansOfRecord": "X",
    "PhysiciansOfRecordIdentificationSequence": "X",
    "PerformingPhysicianName": "X",
    "PerformingPhysicianIdentificationSequence": "X",
    "NameOfPhysiciansReadingStudy": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X",
    "OperatorsName": "X",
    "OperatorIdentificationSequence": "X",
    "AdmittingDiagnosesDescription": "X",
    "AdmittingDiagnosesCodeSequence": "X",
    "DerivationDescription": "X",
    "ReferencedPatientSequence": "X",
    "IssuerOfPatientID": "X",
    "IssuerOfPatientIDQualifiersSequence": "X",
    "PatientBirthTime": "X",
    "PatientInsurancePlanCodeSequence": "X",
    "PatientPrimaryLanguageCodeSequence": "X",
    "OtherPatientIDs": "X",
    "OtherPatientNames": "X",
    "OtherPatientIDsSequence": "X",
    "PatientBirthName": "X",
    "PatientAge": "X",
    "PatientSize": "X",
    "PatientWeight": "X",
    "PatientAddress": "X",
    "PatientMotherBirthName": "X",
    "MilitaryRank": "X",
    "BranchOfService": "X",
    "MedicalRecordLocator": "X",
    "MedicalAlerts": "X",
    "Allergies": "X",
    "CountryOfResidence": "X",
    "RegionOfResidence": "X",
    "PatientTelephoneNumbers": "X",
    "EthnicGroup": "X",
    "Occupation": "X",
    "SmokingStatus": "X",
    "AdditionalPatientHistory": "X",
    "PregnancyStatus": "X",
    "LastMenstrualDate": "X",
    "PatientReligiousPreference": "X",
    "PatientComments": "X",
    "PatientState": "X",
    "ResponsiblePerson": "X",
    "ResponsibleOrganization": "X",
    "DeviceSerialNumber": "X",
    "PlateID": "X",
    "GantryID": "X",
    "CassetteID": "X",
    "DetectorID": "X",
    "ProtocolName": "X",
    "ImageComments": "X",
    "FrameComments": "X",
    "RequestAttributesSequence": "X",
    "StudyComments": "X",
    "RequestedProcedureDescription": "X",
    "RequestedProcedureID": "X",
    "RequestedProcedureComments": "X",
    "RequestingPhysician": "X",
    "RequestingService": "X",
    "ReasonForStudy": "X",
    "ReasonForTheRequestedProcedure": "X",
    "PerformedProcedureStepID": "X",
    "PerformedProcedureStepDescription": "X",
    "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X",
    "PerformedProcedureStepEndDate": "X",
    "PerformedProcedureStepEndTime": "X",
    "PerformedLocation": "X",
    "PerformedStationName": "X",
    "ScheduledProcedureStepDescription": "X",
    "ScheduledProcedureStepID": "X",
    "ScheduledPerformingPhysicianName": "X",
    "ScheduledStationName": "X",
    "CommentsOnThePerformedProcedureStep": "X",
    "AcquisitionComments": "X",
    "AcquisitionDeviceProcessingDescription": "X",
    "ContrastBolusAgent": "X",
    "DischargeDiagnosisDescription": "X",
    "IdentifyingComments": "X",
    "InterpretationText": "X",
    "InterpretationDiagnosisDescription": "X",
    "ImagePresentationComments": "X",
    "TextString": "X",
    "TextComments": "X",
    "TopicAuthor": "X",
    "TopicKeywords": "X",
    "TopicSubject": "X",
    "TopicTitle": "X",
    "DigitalSignaturesSequence": "X",
    "OriginalAttributesSequence": "X",
    "ModifiedAttributesSequence": "X",
    "ReferencedStudySequence": "X",
    "ReferencedPerformedProcedureStepSequence": "X",
    "SourceImageSequence": "X",
    "DataSetTrailingPadding": "X",
    "ContentSequence": "X",
    "TextValue": "X",
    "EncapsulatedDocument": "X",
}

#: DICOM-registered UIDs (SOP classes, transfer syntaxes, coding schemes) are kept
_REGISTERED_ROOT: Final = "1.2.840.10008."
#: SOP classes that usually carry burned-in text (PS3.15 E.3.1): US, US multi-frame, SC family
_BURNED_IN_CLASSES: Final = (
    "1.2.840.10008.5.1.4.1.1.6.1",
    "1.2.840.10008.5.1.4.1.1.3.1",
    "1.2.840.10008.5.1.4.1.1.7",
)
_DUMMY: Final = {"PN": "ANONYMOUS", "LO": "ANONYMOUS", "SH": "ANON", "DA": "19000101"}


def new_uid(uid: str, salt: bytes) -> str:
    """A ``2.25`` UID derived from ``uid`` and ``salt`` (same inputs, same result).

    >>> new_uid("1.2.3", b"s") == new_uid("1.2.3", b"s") != new_uid("1.2.3", b"t")
    True
    >>> new_uid("1.2.3", b"s").startswith("2.25.")
    True
    """
    digest = hashlib.sha256(salt + b"\0" + uid.encode("ascii", "replace")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _walk(ds: Dataset, salt: bytes) -> None:
    for element in list(ds):
        tag = element.tag
        if tag.is_private or (0x5000 <= tag.group <= 0x50FF):
            del ds[tag]
            continue
        if 0x6000 <= tag.group <= 0x60FF and tag.element in (0x3000, 0x4000):
            del ds[tag]
            continue
        action = ACTIONS.get(element.keyword)
        if action == "X":
            del ds[tag]
            continue
        if action == "Z":
            element.value = Sequence() if element.VR == "SQ" else ""
            continue
        if action == "D":
            element.value = Sequence() if element.VR == "SQ" else _DUMMY.get(element.VR, "")
            continue
        if element.VR == "UI":
            _replace_uids(element, salt)
        elif element.VR == "PN":
            del ds[tag]
        elif element.VR == "SQ":
            for item in element.value:
                _walk(item, salt)


def _replace_uids(element: DataElement, salt: bytes) -> None:
    def one(value: str) -> str:
        value = str(value)
        if not value or value.startswith(_REGISTERED_ROOT):
            return value
        return new_uid(value, salt)

    if element.VM > 1:
        element.value = [one(v) for v in element.value]
    elif element.value:
        element.value = one(element.value)


def _burned_in(ds: Dataset) -> bool:
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag == "YES":
        return True
    return not flag and str(ds.get("SOPClassUID", "")) in _BURNED_IN_CLASSES


def _clean_pixels(ds: Dataset, decode: Callable[[Dataset], np.ndarray]) -> None:
    """Clean Pixel Data Option: blank all pixels outside the ultrasound regions (E.3.1)."""
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions:
        raise CannotAnonymize(
            "the object has burned-in annotation at unknown places (no ultrasound regions), "
            "so its pixel data cannot be cleaned"
        )
    pixels = np.array(decode(ds), copy=True)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, columns = int(ds.Rows), int(ds.Columns)
    keep = np.zeros((rows, columns), dtype=bool)
    for region in regions:
        x0 = max(0, int(region.RegionLocationMinX0))
        y0 = max(0, int(region.RegionLocationMinY0))
        x1 = min(columns - 1, int(region.RegionLocationMaxX1))
        y1 = min(rows - 1, int(region.RegionLocationMaxY1))
        keep[y0 : y1 + 1, x0 : x1 + 1] = True
    view = pixels if frames > 1 else pixels[np.newaxis]
    view[:, ~keep] = 0
    ds.PixelData = pixels.tobytes()
    if str(ds.get("PhotometricInterpretation", "")).startswith("YBR"):
        ds.PhotometricInterpretation = "RGB"
    ds["PixelData"].VR = "OB" if int(ds.BitsAllocated) <= 8 else "OW"
    ds.BurnedInAnnotation = "NO"


def anonymize(
    ds: Dataset, salt: bytes, decode: Callable[[Dataset], np.ndarray]
) -> tuple[Dataset, bool]:
    """De-identify ``ds`` in place; (the dataset, whether its pixel data was rewritten).

    ``decode(ds)`` returns the pixel array (all frames, colour as RGB); it is only called when the
    pixel data has to be cleaned. After cleaning, PixelData holds native little-endian pixels: the
    caller must write the dataset in a native transfer syntax. Raises :class:`CannotAnonymize`
    when the object cannot be de-identified.
    """
    if "EncapsulatedDocument" in ds:
        raise CannotAnonymize("an encapsulated document cannot be de-identified here")
    cleaned = False
    if "PixelData" in ds and _burned_in(ds):
        _clean_pixels(ds, decode)
        cleaned = True
    _walk(ds, salt)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID)
    ds.PatientIdentityRemoved = "YES"
    methods = ["PS3.15 E.1 Basic Application Level Confidentiality Profile"]
    codes = [("113100", "Basic Application Confidentiality Profile")]
    if cleaned:
        methods.append("Clean Pixel Data Option")
        codes.append(("113101", "Clean Pixel Data Option"))
    ds.DeidentificationMethod = methods
    sequence = Sequence()
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        sequence.append(item)
    ds.DeidentificationMethodCodeSequence = sequence
    return ds, cleaned

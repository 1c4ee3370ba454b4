"""C-FIND / C-MOVE / C-GET identifiers read into the QIDO query type, and matches written as
response identifiers (PS3.4 Annex C; DIMSE-07..10): pure, no network."""

from io import BytesIO
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from app.dicom.attributes import Level
from app.dicom.dimse_query import (
    IdentifierMismatch,
    InvalidIdentifier,
    Model,
    match_identifier,
    parse_find,
    parse_retrieve,
    response_character_set,
)
from app.dicom.query import (
    DateRange,
    Resource,
    Single,
    TimeRange,
    ValueList,
    Wildcard,
)
from app.dicom.status import Status


def identifier(**keys: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def encoded(ds: Dataset) -> Dataset:
    """``ds`` written and read back (its elements raw, as pynetdicom hands identifiers over)."""
    from io import BytesIO

    from pydicom import dcmread

    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=False, implicit_vr=False, little_endian=True)
    buffer.seek(0)
    return dcmread(buffer, force=True)


def test_levels_and_resources() -> None:
    for model, level, resource in [
        (Model.PATIENT_ROOT, "PATIENT", Resource.PATIENTS),
        (Model.PATIENT_ROOT, "STUDY", Resource.STUDIES),
        (Model.STUDY_ROOT, "STUDY", Resource.STUDIES),
        (Model.STUDY_ROOT, "SERIES", Resource.SERIES),
        (Model.STUDY_ROOT, "IMAGE", Resource.INSTANCES),
    ]:
        keys = {"QueryRetrieveLevel": level}
        if model is Model.PATIENT_ROOT and level != "PATIENT":
            keys["PatientID"] = "P1"
        if level in ("SERIES", "IMAGE"):
            keys["StudyInstanceUID"] = "1.2.3"
        if level == "IMAGE":
            keys["SeriesInstanceUID"] = "1.2.3.4"
        request = parse_find(identifier(**keys), model)
        assert (request.query.resource, request.level.value) == (resource, level)


def test_matching_kinds_are_the_qido_ones() -> None:
    """Single values, wildcards, ranges, UID lists, code lists, universal matching."""
    ds = encoded(
        identifier(
            QueryRetrieveLevel="SERIES",
            StudyInstanceUID="1.2.3",
            SeriesInstanceUID=["1.2.3.4", "1.2.3.5"],
            Modality=["CT", "MR"],
            SeriesDescription="AX*",
            SeriesDate="20240101-20240131",
            SeriesTime="08-12",
            SeriesNumber="3",
            BodyPartExamined="",
        )
    )
    filters = parse_find(ds, Model.STUDY_ROOT).query.filters
    assert filters["StudyInstanceUID"] == ValueList(("1.2.3",))
    assert filters["SeriesInstanceUID"] == ValueList(("1.2.3.4", "1.2.3.5"))
    assert filters["Modality"] == ValueList(("CT", "MR"))
    assert filters["SeriesDescription"] == Wildcard("AX*")
    assert isinstance(filters["SeriesDate"], DateRange)
    assert isinstance(filters["SeriesTime"], TimeRange)
    assert "BodyPartExamined" not in filters  # universal matching filters nothing
    assert filters["SeriesNumber"].value == 3  # type: ignore[union-attr]


def test_sequence_keys() -> None:
    item = Dataset()
    item.RequestedProcedureID = "RP-1"
    item.AccessionNumber = ""
    ds = identifier(
        QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2.3", RequestAttributesSequence=[item]
    )
    request = parse_find(encoded(ds), Model.STUDY_ROOT)
    assert request.query.filters["RequestAttributesSequence.RequestedProcedureID"] == Single("RP-1")
    key = next(k for k in request.keys if k.tag == 0x00400275)
    assert key.items == (0x00080050, 0x00401001)
    assert request.pending_status == 0xFF00
    two = identifier(
        QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2.3", RequestAttributesSequence=[item] * 2
    )
    with pytest.raises(InvalidIdentifier, match="one item at most"):
        parse_find(two, Model.STUDY_ROOT)


def test_hierarchy_is_enforced() -> None:
    with pytest.raises(IdentifierMismatch, match="is of the SERIES level") as caught:
        parse_find(identifier(QueryRetrieveLevel="STUDY", Modality="CT"), Model.STUDY_ROOT)
    assert caught.value.offending == (0x00080060,)
    assert caught.value.dimse_status is Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    with pytest.raises(IdentifierMismatch, match="PatientID: one value needed"):
        parse_find(identifier(QueryRetrieveLevel="STUDY"), Model.PATIENT_ROOT)
    with pytest.raises(IdentifierMismatch, match="not a Study Root level"):
        parse_find(identifier(QueryRetrieveLevel="PATIENT"), Model.STUDY_ROOT)
    # a key of a level above: returned (and matched), not refused
    request = parse_find(
        identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2.3", StudyDescription="CT*"),
        Model.STUDY_ROOT,
    )
    assert request.query.filters["StudyDescription"] == Wildcard("CT*")


def test_unsupported_keys() -> None:
    request = parse_find(
        identifier(
            QueryRetrieveLevel="STUDY", OtherPatientIDs="X", SOPClassesInStudy="", StudyID=""
        ),
        Model.STUDY_ROOT,
    )
    assert request.unsupported == ("OtherPatientIDs", "SOPClassesInStudy")
    assert "OtherPatientIDs" not in request.query.filters
    assert request.pending_status == 0xFF01


def test_invalid_values_are_c000() -> None:
    for keys in (
        {"StudyDate": "2024-01-01"},
        {"StudyTime": "1300-0900"},
        {"StudyInstanceUID": "1.2.x"},
        {"PatientName": ["A", "B"]},
    ):
        with pytest.raises(InvalidIdentifier) as caught:
            parse_find(identifier(QueryRetrieveLevel="STUDY", **keys), Model.STUDY_ROOT)
        assert not isinstance(caught.value, IdentifierMismatch)
        assert caught.value.dimse_status == 0xC000
        assert len(caught.value.comment) <= 64


def test_character_sets_are_decoded() -> None:
    ds = identifier(SpecificCharacterSet="ISO_IR 100", QueryRetrieveLevel="STUDY")
    ds.PatientName = "Müller*"
    request = parse_find(encoded(ds), Model.STUDY_ROOT)
    assert request.query.filters["PatientName"] == Wildcard("Müller*")
    assert request.character_sets == ("ISO_IR 100",)
    with pytest.raises(InvalidIdentifier, match="unknown character set"):
        parse_find(
            identifier(SpecificCharacterSet="KLINGON", QueryRetrieveLevel="STUDY"),
            Model.STUDY_ROOT,
        )


def _name(value: dict[str, str]) -> dict[str, Any]:
    return {"00100010": {"vr": "PN", "Value": [value]}}


def test_response_character_set() -> None:
    japanese = _name({"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"})
    assert response_character_set(japanese, ("", "ISO 2022 IR 87")) == ("", "ISO 2022 IR 87")
    assert response_character_set(japanese, ("ISO_IR 100",)) == ("ISO_IR 192",)
    assert response_character_set(_name({"Alphabetic": "Doe^Jane"}), ()) == ()
    assert response_character_set(_name({"Alphabetic": "Müller"}), ()) == ("ISO_IR 192",)


def decoded(data: bytes, implicit: bool = True, little: bool = True) -> Dataset:
    return read_dataset(BytesIO(data), implicit, little)


@pytest.mark.parametrize(
    ("syntax", "implicit", "little"),
    [
        ("1.2.840.10008.1.2", True, True),
        ("1.2.840.10008.1.2.1", False, True),
        ("1.2.840.10008.1.2.2", False, False),
    ],
)
def test_matches_are_encoded_in_the_context_syntax(
    syntax: str, implicit: bool, little: bool
) -> None:
    """Every VR a stored object holds, in each Query/Retrieve syntax, reads back as written;
    text in ISO 2022 IR 87 with its escape sequences."""
    ds = identifier(QueryRetrieveLevel="IMAGE", StudyInstanceUID="1.2", SeriesInstanceUID="1.3")
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    for keyword in ("SOPInstanceUID", "PatientName", "InstanceNumber", "Rows", "ImageType",
                    "PixelSpacing", "StudyDescription", "FrameIncrementPointer"):  # fmt: skip
        setattr(ds, keyword, "" if keyword != "Rows" else None)
    request = parse_find(ds, Model.STUDY_ROOT)
    obj = {
        "00080018": {"vr": "UI", "Value": ["1.2.3"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Yamada", "Ideographic": "山田"}]},
        "00200013": {"vr": "IS", "Value": [12]},
        "00280010": {"vr": "US", "Value": [512]},
        "00080008": {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY"]},
        "00280030": {"vr": "DS", "Value": [0.1 + 0.2, 2]},
        "00081030": {"vr": "LO", "Value": ["頭部"]},
        "00280009": {"vr": "AT", "Value": ["00181063"]},
    }
    answer = decoded(match_identifier(obj, request, "LIGHTBOX", syntax), implicit, little)
    assert list(answer.SpecificCharacterSet) == ["", "ISO 2022 IR 87"]
    assert str(answer.PatientName) == "Yamada=山田"
    assert (answer.InstanceNumber, answer.Rows, list(answer.ImageType)) == (
        12,
        512,
        ["ORIGINAL", "PRIMARY"],
    )
    assert [float(v) for v in answer.PixelSpacing] == pytest.approx([0.3, 2.0])
    assert answer.StudyDescription == "頭部"
    assert answer.FrameIncrementPointer == 0x00181063
    assert (answer.SOPInstanceUID, answer.StudyInstanceUID) == ("1.2.3", "")


def test_match_identifier_keeps_the_requested_keys() -> None:
    item = Dataset()
    item.RequestedProcedureID = ""
    request = parse_find(
        identifier(
            QueryRetrieveLevel="SERIES",
            StudyInstanceUID="1.2.3",
            Modality="",
            RequestAttributesSequence=[item],
        ),
        Model.STUDY_ROOT,
    )
    obj = {
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "0020000E": {"vr": "UI", "Value": ["1.2.3.4"]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
        "0008103E": {"vr": "LO", "Value": ["not asked for"]},
        "00400275": {
            "vr": "SQ",
            "Value": [{"00401001": {"vr": "SH", "Value": ["RP"]}, "00400009": {"vr": "SH"}}],
        },
    }
    ds = decoded(match_identifier(obj, request, "LIGHTBOX"))
    assert ds.Modality == "CT"
    assert ds.SeriesInstanceUID == "1.2.3.4"
    assert "SeriesDescription" not in ds
    assert list(ds.RequestAttributesSequence[0].keys()) == [0x00401001]
    assert (ds.QueryRetrieveLevel, ds.RetrieveAETitle, ds.InstanceAvailability) == (
        "SERIES",
        "LIGHTBOX",
        "ONLINE",
    )


def test_retrieve_identifiers() -> None:
    patient = parse_retrieve(identifier(QueryRetrieveLevel="PATIENT", PatientID="P1"),
                             Model.PATIENT_ROOT)  # fmt: skip
    assert (patient.level, patient.query.level) == (Level.PATIENT, Level.STUDY)
    assert patient.query.filters == {"PatientID": Single("P1")}
    images = parse_retrieve(
        identifier(
            QueryRetrieveLevel="IMAGE",
            StudyInstanceUID="1.2.3",
            SeriesInstanceUID="1.2.3.4",
            SOPInstanceUID=["1.2.3.4.5", "1.2.3.4.6"],
            PatientName="ignored",
        ),
        Model.STUDY_ROOT,
    )
    assert set(images.query.filters) == {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
    }
    with pytest.raises(IdentifierMismatch, match="StudyInstanceUID needed"):
        parse_retrieve(identifier(QueryRetrieveLevel="STUDY"), Model.STUDY_ROOT)
    with pytest.raises(InvalidIdentifier, match="names its objects exactly"):
        parse_retrieve(identifier(QueryRetrieveLevel="PATIENT", PatientID="P*"),
                       Model.PATIENT_ROOT)  # fmt: skip
    with pytest.raises(IdentifierMismatch, match="is of the IMAGE level"):
        parse_retrieve(
            identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2", SOPInstanceUID="1.3"),
            Model.STUDY_ROOT,
        )

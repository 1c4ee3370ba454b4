"""The DICOMDIR of an export (PS3.10 §8, PS3.3 Annex F), built from index attributes and read
back by pydicom's FileSet and DCMTK."""

from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from app.dicom.dicomdir import FileSetBuilder, Leaf, header_from_json, image_record
from tests.api.test_wado_archive import dcmtk_accepts
from tests.factories import make_dataset
from tests.media import read_fileset


def _study(**values: object) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = generate_uid()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _series(**values: object) -> Dataset:
    ds = Dataset()
    ds.SeriesInstanceUID = generate_uid()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _leaf(number: int | None = None) -> Leaf:
    return Leaf(CTImageStorage, generate_uid(), ExplicitVRLittleEndian, number)


def test_the_hand_encoded_image_record_is_pydicoms() -> None:
    leaf = _leaf(12)
    record = Dataset()
    record.OffsetOfTheNextDirectoryRecord = 0
    record.RecordInUseFlag = 0xFFFF
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    record.DirectoryRecordType = "IMAGE"
    record.ReferencedFileID = ["PT000000", "ST000000", "SE000000", "IM000000"]
    record.ReferencedSOPClassUIDInFile = leaf.sop_class_uid
    record.ReferencedSOPInstanceUIDInFile = leaf.sop_uid
    record.ReferencedTransferSyntaxUIDInFile = leaf.transfer_syntax_uid
    record.InstanceNumber = 12
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, record)
    ours = image_record(["PT000000", "ST000000", "SE000000", "IM000000"], leaf, 12)
    assert bytes(ours) == buffer.getvalue()


def test_patients_studies_series_and_invented_keys(tmp_path: Path) -> None:
    """Two studies of one patient share its record; a study held without PatientID, StudyDate,
    StudyTime, StudyID, Modality, SeriesNumber or InstanceNumber gets invented values."""
    builder = FileSetBuilder()
    first = _study(PatientID="P1", PatientName="Åsa^Ölund", StudyDate="20240101", StudyTime="1")
    first.StudyID = "7"
    second = _study(PatientID="P1", StudyDate="20240202", StudyTime="2", StudyID="8")
    bare = _study()
    ct = _series(Modality="CT", SeriesNumber=1)
    mr = _series(Modality="MR", SeriesNumber=2)
    nothing = _series()
    ids = [
        builder.add(first, ct, _leaf(1)),
        builder.add(first, ct, _leaf(2)),
        builder.add(first, mr, _leaf(1)),
        builder.add(second, _series(Modality="CT", SeriesNumber=1), _leaf(1)),
        builder.add(bare, nothing, _leaf()),
    ]
    assert ids == [
        "PT000000/ST000000/SE000000/IM000000",
        "PT000000/ST000000/SE000000/IM000001",
        "PT000000/ST000000/SE000001/IM000000",
        "PT000000/ST000001/SE000000/IM000000",
        "PT000001/ST000000/SE000000/IM000000",
    ]
    (tmp_path / "DICOMDIR").write_bytes(builder.encode())
    leaves = [first, first, first, second, bare]
    for file_id, study in zip(ids, leaves, strict=True):
        ds = make_dataset(StudyInstanceUID=study.StudyInstanceUID)
        path = tmp_path.joinpath(*file_id.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    dcmtk_accepts(tmp_path / "DICOMDIR", images=5)

    directory = dcmread(tmp_path / "DICOMDIR")
    records = {r.DirectoryRecordType: r for r in reversed(directory.DirectoryRecordSequence)}
    patients = [r for r in directory.DirectoryRecordSequence if r.DirectoryRecordType == "PATIENT"]
    assert patients[0].PatientID == "P1"
    assert patients[1].PatientID.startswith("NOID-")
    assert str(patients[0].PatientName) == "Åsa^Ölund"
    assert patients[0].SpecificCharacterSet == "ISO_IR 192"
    assert "SpecificCharacterSet" not in patients[1]
    studies = [r for r in directory.DirectoryRecordSequence if r.DirectoryRecordType == "STUDY"]
    assert [(s.StudyDate, s.StudyTime, s.StudyID) for s in studies][-1] == (
        "19000101",
        "000000",
        "3",
    )
    assert records["SERIES"].Modality == "CT"
    last_series = [
        r for r in directory.DirectoryRecordSequence if r.DirectoryRecordType == "SERIES"
    ]
    assert (last_series[-1].Modality, last_series[-1].SeriesNumber) == ("OT", 1)
    with read_fileset(tmp_path / "DICOMDIR") as fileset:
        assert len(fileset) == 5
        assert len(fileset.find(PatientID="P1")) == 4


def test_a_leaf_with_its_own_record_type_and_a_fallback() -> None:
    """An SR's record is an SR DOCUMENT from its header; one lacking a Type 1 key of that record
    falls back to IMAGE; JSON pydicom cannot read gives an empty header."""
    sr = Dataset()
    sr.InstanceNumber = 3
    sr.CompletionFlag, sr.VerificationFlag = "COMPLETE", "UNVERIFIED"
    sr.ContentDate, sr.ContentTime = "20240101", "120000"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "1", "99X", "Report"
    sr.ConceptNameCodeSequence = [code]
    builder = FileSetBuilder()
    study, series = _study(PatientID="P"), _series(Modality="SR", SeriesNumber=1)
    sop = "1.2.840.10008.5.1.4.1.1.88.11"
    good = builder.add(study, series, Leaf(sop, generate_uid(), ExplicitVRLittleEndian, 3, sr))
    partial = Dataset()
    partial.InstanceNumber = 4
    bad = builder.add(study, series, Leaf(sop, generate_uid(), ExplicitVRLittleEndian, 4, partial))
    assert good.endswith("SR000000")
    assert bad.endswith("IM000001")
    assert len(header_from_json(b"{not json")) == 0

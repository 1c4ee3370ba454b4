"""The PS3.15 Basic Profile on a dataset (app.dicom.anonymize)."""

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid

from app.dicom.anonymize import CannotAnonymize, anonymize
from tests.factories import make_dataset


def _never(_: Dataset) -> np.ndarray:
    raise AssertionError("pixels must not be decoded when there is nothing to clean")


def test_basic_profile_in_nested_items_private_tags_overlays_and_curves() -> None:
    ds = make_dataset()
    ds.PerformingPhysicianName = "Who^Ever"
    ds.add_new(0x00111001, "LO", "private")
    ds.add_new(0x60003000, "OW", b"\0\0")  # overlay data
    ds.add_new(0x50000010, "US", 1)  # curve group
    referenced = generate_uid()
    item = Dataset()
    item.ReferencedSOPInstanceUID = referenced
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.InstitutionName = "Somewhere"
    item.PersonName = "Nested^Person"
    ds.ReferencedImageSequence = [item]
    out, cleaned = anonymize(ds, b"salt", _never)
    assert not cleaned
    assert out.PatientName == ""
    assert out.PatientID == ""
    assert "PerformingPhysicianName" not in out
    assert "StudyDescription" not in out
    assert 0x00111001 not in out
    assert 0x60003000 not in out
    assert 0x50000010 not in out
    nested = out.ReferencedImageSequence[0]
    assert "InstitutionName" not in nested
    assert nested.ReferencedSOPInstanceUID != referenced
    assert nested.ReferencedSOPClassUID == out.SOPClassUID  # a registered UID
    assert nested.PersonName == "ANONYMOUS"


def test_uids_are_consistent_per_salt() -> None:
    first = make_dataset()
    second = make_dataset(StudyInstanceUID=first.StudyInstanceUID)
    a, _ = anonymize(first, b"s", _never)
    b, _ = anonymize(second, b"s", _never)
    assert a.StudyInstanceUID == b.StudyInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID


def test_refuses_what_it_cannot_clean() -> None:
    with pytest.raises(CannotAnonymize):
        anonymize(make_dataset(BurnedInAnnotation="YES"), b"s", _never)
    secondary = make_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.7")  # flag absent: assume text
    with pytest.raises(CannotAnonymize):
        anonymize(secondary, b"s", _never)
    document = make_dataset()
    document.EncapsulatedDocument = b"%PDF-1.4"
    with pytest.raises(CannotAnonymize):
        anonymize(document, b"s", _never)

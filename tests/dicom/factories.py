"""Hand-made DICOM data sets and PS3.10 files for the pure ``app.dicom`` tests."""

import io
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid


def make_dataset(transfer_syntax: str = ExplicitVRLittleEndian, **overrides: Any) -> Dataset:
    """A valid single-frame CT data set with File Meta; keyword overrides (``None`` deletes)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientName = "Doe^John"
    ds.PatientID = "PID-1"
    ds.StudyDate = "20240115"
    ds.StudyTime = "101530"
    ds.SeriesNumber = "3"
    ds.InstanceNumber = "7"
    ds.Rows = 2
    ds.Columns = 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(8))
    for keyword, value in overrides.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", CTImageStorage)
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", generate_uid())
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta = meta
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """Write ``ds`` as a PS3.10 file (preamble, DICM, File Meta) in its File Meta syntax."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def corpus_path(name: str) -> str:
    """Path of a file in pydicom's test corpus (or pydicom-data), found on disk."""
    from tests.corpus import corpus_path as find

    return str(find(name))

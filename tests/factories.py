"""Test data: valid DICOM data sets and PS3.10 files built with pydicom, and STOW-RS bodies.

The one place tests build DICOM instances by hand: the pure ``app.dicom`` tests and the HTTP
tests alike.
"""

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)


def make_dataset(
    transfer_syntax: str = ExplicitVRLittleEndian,
    *,
    rows: int = 8,
    columns: int = 8,
    frames: int = 1,
    **overrides: Any,
) -> Dataset:
    """A small valid CT image with File Meta and fresh UIDs, its File Meta naming
    ``transfer_syntax`` (the pixels are native: a test of an encapsulated syntax sets its own
    Pixel Data). Keywords in ``overrides`` replace values; ``None`` deletes the element."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20240131"
    ds.StudyTime = "101530"
    ds.AccessionNumber = "ACC-1"
    ds.StudyID = "1"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.StudyDescription = "CT HEAD"
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.SeriesDescription = "AXIAL"
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if "PixelData" not in overrides:  # a test's own (or none) may stand for gigabytes of pixels
        pixels = (np.arange(rows * columns * frames, dtype=np.uint16) % 4096).reshape(
            (frames, rows, columns) if frames > 1 else (rows, columns)
        )
        ds.PixelData = pixels.tobytes()
    for keyword, value in overrides.items():
        if value is not None:
            setattr(ds, keyword, value)
        elif keyword in ds:
            delattr(ds, keyword)
    ds.file_meta = FileMetaDataset()
    # File Meta needs both UIDs even when a test has deleted them from the data set
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", CTImageStorage)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", generate_uid())
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


#: what an image has and a document does not
IMAGE_KEYWORDS = (
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PixelData",
)


def make_pdf_dataset(document: bytes, **overrides: Any) -> Dataset:
    """An Encapsulated PDF instance of ``document`` (pydicom pads an odd length on writing), with
    no image attributes; ``overrides`` as in :func:`make_dataset`."""
    no_image: dict[str, Any] = dict.fromkeys(IMAGE_KEYWORDS)  # None deletes
    values: dict[str, Any] = {
        **no_image,
        "SOPClassUID": EncapsulatedPDFStorage,
        "Modality": "DOC",
        "MIMETypeOfEncapsulatedDocument": "application/pdf",
        "EncapsulatedDocument": document,
        **overrides,
    }
    return make_dataset(**values)


def streamed_head(length: int, **overrides: Any) -> bytes:
    """``make_dataset(**overrides)`` as a PS3.10 file without its Pixel Data, followed by the
    header of a Pixel Data element of ``length`` bytes (OW, Explicit VR Little Endian): what a
    test sends before the pixels it generates on the fly, never holding an instance whole."""
    head = to_bytes(make_dataset(PixelData=None, **overrides))
    # (7FE0,0010) OW: tag, VR, 2 reserved bytes, 4-byte length
    return head + b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little")


def to_bytes(ds: Dataset) -> bytes:
    """The PS3.10 file (preamble, DICM, File Meta, data set) of ``ds``, in its File Meta's
    transfer syntax."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def make_instance(**overrides: Any) -> bytes:
    """``to_bytes(make_dataset(**overrides))``."""
    return to_bytes(make_dataset(**overrides))


BOUNDARY = "lightbox-test-boundary-7d1f"


def multipart(
    parts: Sequence[bytes],
    *,
    boundary: str = BOUNDARY,
    part_type: str = "application/dicom",
    close: bool = True,
) -> bytes:
    """A multipart/related body with one part per payload (PS3.18 §8.6.1.2)."""
    out = bytearray()
    for payload in parts:
        out += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode()
        out += payload
        out += b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def stow_headers(boundary: str = BOUNDARY, part_type: str = "application/dicom") -> dict[str, str]:
    return {
        "Content-Type": f'multipart/related; type="{part_type}"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }


def without_file_meta(data: bytes) -> bytes:
    """The data set of a PS3.10 file (preamble, DICM and File Meta group cut off): what a
    C-STORE carries."""
    assert data[128:132] == b"DICM"
    assert data[132:136] == b"\x02\x00\x00\x00"
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length :]


def make_ct_series(
    slices: int, *, rows: int = 512, columns: int = 512, **overrides: Any
) -> list[bytes]:
    """A CT series as PS3.10 files: ``slices`` axial slices of signed 16-bit pixels (HU with
    intercept -1024) showing a disc whose size changes along the series, positioned along the
    slice normal (ImagePositionPatient) but stored and numbered in shuffled order, so a viewer
    has to sort them. ``overrides`` go to every slice (one study and series UID by default)."""
    study = overrides.pop("StudyInstanceUID", generate_uid())
    series = overrides.pop("SeriesInstanceUID", generate_uid())
    y, x = np.mgrid[0:rows, 0:columns]
    distance = np.hypot(y - rows / 2, x - columns / 2)
    rng = np.random.default_rng(7)
    order = rng.permutation(slices)
    out = []
    for position, number in enumerate(order):
        radius = columns * (0.15 + 0.3 * (position / max(1, slices - 1)))
        hu = np.where(distance < radius, 60 + (x % 64), -1000 + (y % 32)).astype(np.int16)
        stored = (hu + 1024).astype(np.int16)
        ds = make_dataset(
            rows=rows,
            columns=columns,
            StudyInstanceUID=study,
            SeriesInstanceUID=series,
            InstanceNumber=int(number) + 1,
            ImagePositionPatient=[0.0, 0.0, float(position) * 2.5],
            ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            SliceLocation=float(position) * 2.5,
            SliceThickness=2.5,
            PixelSpacing=[0.7, 0.7],
            BitsStored=16,
            HighBit=15,
            PixelRepresentation=1,
            RescaleIntercept=-1024,
            RescaleSlope=1,
            WindowCenter=40,
            WindowWidth=400,
            PixelData=stored.tobytes(),
            **overrides,
        )
        out.append(to_bytes(ds))
    return out


def _code(value: str, meaning: str, scheme: str = "DCM") -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def make_sr_dataset(title: str, findings: Sequence[str], **overrides: Any) -> Dataset:
    """A Basic Text SR (a report titled ``title`` holding one TEXT item per finding), no image
    attributes; ``overrides`` as in :func:`make_dataset`."""
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import BasicTextSRStorage

    items = []
    for finding in findings:
        item = Dataset()
        item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
        item.ConceptNameCodeSequence = DicomSequence([_code("121071", "Finding")])
        item.TextValue = finding
        items.append(item)
    no_image: dict[str, Any] = dict.fromkeys(IMAGE_KEYWORDS)
    values: dict[str, Any] = {
        **no_image,
        "SOPClassUID": BasicTextSRStorage,
        "Modality": "SR",
        "SeriesDescription": "Report",
        "ValueType": "CONTAINER",
        "ContinuityOfContent": "SEPARATE",
        "CompletionFlag": "COMPLETE",
        "VerificationFlag": "UNVERIFIED",
        "ConceptNameCodeSequence": DicomSequence([_code("11528-7", title, "LN")]),
        "ContentSequence": DicomSequence(items),
        **overrides,
    }
    return make_dataset(**values)

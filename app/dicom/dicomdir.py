"""The DICOMDIR of a file-set of stored instances (PS3.10 §8, PS3.3 Annex F), from their headers.

A ZIP archive or a directory exported by Lightbox is a PS3.10 file-set: every instance under a
File ID of up to eight components of up to eight characters (uppercase letters, digits,
underscore; PS3.10 §8.2, §8.5), here ``PTnnnnnn/STnnnnnn/SEnnnnnn/IMnnnnnn`` as pydicom's
:class:`~pydicom.fileset.FileSet` names them, and the DICOMDIR at the root, a Basic Directory
(PS3.3 §F.2) whose PATIENT / STUDY / SERIES / leaf records reference every instance.

Why not ``FileSet.add`` + ``FileSet.write``: ``add`` saves every instance to a staging
directory and checks the whole set for each addition (1,000 instances took 12.7 s, 4,000 took
183 s on this machine), and ``write`` copies every file again. An export of a multi-gigabyte
study must stream its blobs from the object store, so the DICOMDIR is made here from the index's
attributes alone: the records are pydicom Datasets built by pydicom's own record creators
(:data:`pydicom.fileset.DIRECTORY_RECORDERS`) where a leaf needs more than an InstanceNumber,
encoded once each by pydicom's writer, with the record offsets (PS3.3 §F.3.2.1) laid out here.
Memory is a few hundred bytes per instance (its encoded record); ``FileSet`` reads the result
back in the tests.

Type 1 keys a record needs but the instance lacks are invented, as DCMTK's ``dcmmkdir
--invent`` does (PS3.3 §F.5 makes them Type 1; an archive must not fail on an old modality's
file): PatientID ``NOID-<hash of the StudyInstanceUID>``, StudyDate ``19000101``, StudyTime
``000000``, StudyID, SeriesNumber and InstanceNumber the record's position (from 1), Modality
``OT``. A leaf of a class with its own record type (SR DOCUMENT, PRESENTATION, ...) whose
instance lacks one of that record's Type 1 keys falls back to an IMAGE record.
"""

import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.fileset import DIRECTORY_RECORDERS
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    generate_uid,
)

__all__ = [
    "DICOMDIR",
    "FileSetBuilder",
    "Leaf",
    "leaf_record_type",
]

#: the name of the directory file at the root of a file-set (PS3.10 §8.6)
DICOMDIR: Final = "DICOMDIR"

#: the File ID component prefix of each record type (pydicom's own names)
_PREFIXES: Final = {
    "PATIENT": "PT",
    "STUDY": "ST",
    "SERIES": "SE",
    "IMAGE": "IM",
    "RT DOSE": "RD",
    "RT STRUCTURE SET": "RS",
    "RT PLAN": "RP",
    "RT TREAT RECORD": "RX",
    "PRESENTATION": "PR",
    "WAVEFORM": "WV",
    "SR DOCUMENT": "SR",
    "KEY OBJECT DOC": "KY",
    "SPECTROSCOPY": "SP",
    "RAW DATA": "RW",
    "REGISTRATION": "RG",
    "FIDUCIAL": "FD",
    "ENCAP DOC": "ED",
    "VALUE MAP": "VM",
    "SURFACE": "SF",
}

_SR: Final = "1.2.840.10008.5.1.4.1.1.88."
_PR: Final = "1.2.840.10008.5.1.4.1.1.11."
_WAVEFORM: Final = "1.2.840.10008.5.1.4.1.1.9."
_ENCAPSULATED: Final = "1.2.840.10008.5.1.4.1.1.104."
#: PS3.3 Table F.4-1 (the record type of a SOP class), for classes whose record is not IMAGE
_BY_CLASS: Final = {
    "1.2.840.10008.5.1.4.1.1.88.59": "KEY OBJECT DOC",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT DOSE",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT STRUCTURE SET",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT PLAN",
    "1.2.840.10008.5.1.4.1.1.481.8": "RT PLAN",
    "1.2.840.10008.5.1.4.1.1.481.4": "RT TREAT RECORD",
    "1.2.840.10008.5.1.4.1.1.481.6": "RT TREAT RECORD",
    "1.2.840.10008.5.1.4.1.1.481.7": "RT TREAT RECORD",
    "1.2.840.10008.5.1.4.1.1.481.9": "RT TREAT RECORD",
    "1.2.840.10008.5.1.4.1.1.4.2": "SPECTROSCOPY",
    "1.2.840.10008.5.1.4.1.1.66": "RAW DATA",
    "1.2.840.10008.5.1.4.1.1.66.1": "REGISTRATION",
    "1.2.840.10008.5.1.4.1.1.66.3": "REGISTRATION",
    "1.2.840.10008.5.1.4.1.1.66.2": "FIDUCIAL",
    "1.2.840.10008.5.1.4.1.1.67": "VALUE MAP",
    "1.2.840.10008.5.1.4.1.1.66.5": "SURFACE",
}

#: the largest index a File ID component of six digits holds
_MAX_INDEX: Final = 999_999


def leaf_record_type(sop_class_uid: str) -> str:
    """The directory record type of an instance of ``sop_class_uid`` (PS3.3 Table F.4-1).

    >>> ct, sr = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.88.22"
    >>> leaf_record_type(ct), leaf_record_type(sr)
    ('IMAGE', 'SR DOCUMENT')
    >>> kos, pdf = "1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.5.1.4.1.1.104.1"
    >>> leaf_record_type(kos), leaf_record_type(pdf)
    ('KEY OBJECT DOC', 'ENCAP DOC')
    """
    known = _BY_CLASS.get(sop_class_uid)
    if known is not None:
        return known
    if sop_class_uid.startswith(_SR):
        return "SR DOCUMENT"
    if sop_class_uid.startswith(_PR):
        return "PRESENTATION"
    if sop_class_uid.startswith(_WAVEFORM):
        return "WAVEFORM"
    if sop_class_uid.startswith(_ENCAPSULATED):
        return "ENCAP DOC"
    return "IMAGE"


@dataclass(frozen=True, slots=True)
class Leaf:
    """One instance of the file-set: what its leaf record says of it.

    ``header`` is the instance's header (no bulk data), needed only for a leaf record type other
    than IMAGE (:func:`leaf_record_type`); an IMAGE record takes ``instance_number`` alone.
    """

    sop_class_uid: str
    sop_uid: str
    transfer_syntax_uid: str
    instance_number: int | None = None
    header: Dataset | None = None


@dataclass(slots=True)
class _Node:
    """A directory record: its encoded body (offsets zero until laid out) and its children."""

    body: bytearray
    children: list["_Node"] = field(default_factory=list)
    offset: int = 0


@dataclass(slots=True)
class _Series:
    node: _Node
    index: int


@dataclass(slots=True)
class _Study:
    node: _Node
    index: int
    series: dict[str, _Series] = field(default_factory=dict)


@dataclass(slots=True)
class _Patient:
    node: _Node
    index: int
    studies: dict[str, _Study] = field(default_factory=dict)


class FileSetBuilder:
    """Collects the instances of a file-set, then encodes its DICOMDIR (module docstring).

    :meth:`add` names each instance's File ID as it is added (its position under its series),
    so the blobs can be written under it before the DICOMDIR is encoded.

    >>> from pydicom import Dataset
    >>> study = Dataset(); study.StudyInstanceUID = "1.2.3"; study.PatientID = "P1"
    >>> series = Dataset(); series.SeriesInstanceUID = "1.2.3.4"; series.Modality = "CT"
    >>> builder = FileSetBuilder()
    >>> leaf = Leaf("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5", "1.2.840.10008.1.2.1", 1)
    >>> builder.add(study, series, leaf)
    'PT000000/ST000000/SE000000/IM000000'
    >>> builder.encode()[128:132]
    b'DICM'
    """

    def __init__(self, *, fileset_id: str = "LIGHTBOX", fileset_uid: str | None = None) -> None:
        self.fileset_id = fileset_id
        self.fileset_uid = fileset_uid or generate_uid()
        self._patients: dict[str, _Patient] = {}
        self._roots: list[_Node] = []
        self._studies = 0  # studies added, for invented StudyIDs
        #: the study and series of the previous addition (an export adds a series at a time)
        self._last_study: tuple[Dataset, _Patient, _Study] | None = None
        self._last_series: tuple[Dataset, _Series] | None = None
        self.count = 0

    def add(self, study: Dataset, series: Dataset, leaf: Leaf) -> str:
        """Add one instance under its study's patient, its study and its series; returns its
        File ID (components joined by ``/``).

        ``study`` holds the patient and study attributes (the index's study level), ``series``
        the series attributes; a study or series already added is not described again.
        """
        if self._last_study is not None and self._last_study[0] is study:
            patient, study_entry = self._last_study[1], self._last_study[2]
        else:
            patient, study_entry = self._study(study)
            self._last_study = (study, patient, study_entry)
        if self._last_series is not None and self._last_series[0] is series:
            series_entry = self._last_series[1]
        else:
            series_entry = self._series(study_entry, series)
            self._last_series = (series, series_entry)
        position = len(series_entry.node.children)
        for index in (patient.index, study_entry.index, series_entry.index, position):
            if index > _MAX_INDEX:
                raise ValueError("more than 1,000,000 records under one directory record")
        record_type, record = _leaf_record(leaf)
        file_id = (
            f"PT{patient.index:06d}",
            f"ST{study_entry.index:06d}",
            f"SE{series_entry.index:06d}",
            f"{_PREFIXES.get(record_type, 'IM')}{position:06d}",
        )
        if record is None:  # the common case, encoded without pydicom (a record in ~5 us)
            number = leaf.instance_number if leaf.instance_number is not None else position + 1
            body = image_record(file_id, leaf, number)
        else:
            record.ReferencedFileID = list(file_id)
            record.ReferencedSOPClassUIDInFile = leaf.sop_class_uid
            record.ReferencedSOPInstanceUIDInFile = leaf.sop_uid
            record.ReferencedTransferSyntaxUIDInFile = leaf.transfer_syntax_uid
            body = _encode(record)
        series_entry.node.children.append(_Node(body))
        self.count += 1
        return "/".join(file_id)

    def _study(self, study: Dataset) -> tuple[_Patient, _Study]:
        """The patient and study entries of ``study`` (made when first seen)."""
        study_uid = str(study.StudyInstanceUID)
        patient_id = _text(study, "PatientID") or _invented_patient(study_uid)
        patient = self._patients.get(patient_id)
        if patient is None:
            node = _Node(_encode(_patient_record(study, patient_id)))
            patient = self._patients[patient_id] = _Patient(node, len(self._roots))
            self._roots.append(node)
        entry = patient.studies.get(study_uid)
        if entry is None:
            self._studies += 1
            node = _Node(_encode(_study_record(study, self._studies)))
            entry = patient.studies[study_uid] = _Study(node, len(patient.node.children))
            patient.node.children.append(node)
        return patient, entry

    def _series(self, study_entry: _Study, series: Dataset) -> _Series:
        """The series entry of ``series`` under its study (made when first seen)."""
        series_uid = str(series.SeriesInstanceUID)
        entry = study_entry.series.get(series_uid)
        if entry is None:
            position = len(study_entry.node.children)
            node = _Node(_encode(_series_record(series, position + 1)))
            entry = study_entry.series[series_uid] = _Series(node, position)
            study_entry.node.children.append(node)
        return entry

    def encode(self) -> bytes:
        """The DICOMDIR file: preamble, File Meta, the Basic Directory with every record."""
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
        meta.MediaStorageSOPInstanceUID = UID(self.fileset_uid)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        head = DicomBytesIO()
        head.is_little_endian, head.is_implicit_VR = True, False
        head.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(head, meta, enforce_standard=True)
        directory = Dataset()
        directory.FileSetID = self.fileset_id
        directory.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
        directory.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
        directory.FileSetConsistencyFlag = 0
        write_dataset(head, directory)
        # (0004,1220) Directory Record Sequence, undefined length (PS3.5 §7.5.2)
        head.write(struct.pack("<HH2sHI", 0x0004, 0x1220, b"SQ", 0, 0xFFFFFFFF))
        out = bytearray(head.getvalue())

        # PS3.3 §F.3.2.1: each offset is from the first byte of the file to the item holding
        # the record; records in pre-order (each directory entity's records follow its parent)
        offset = len(out)
        order = list(_preorder(self._roots))
        for node in order:
            node.offset = offset
            offset += 8 + len(node.body)
        for siblings in _sibling_lists(self._roots):
            for position, node in enumerate(siblings):
                following = siblings[position + 1].offset if position + 1 < len(siblings) else 0
                lower = node.children[0].offset if node.children else 0
                struct.pack_into("<I", node.body, _NEXT_AT, following)
                struct.pack_into("<I", node.body, _LOWER_AT, lower)
        first = self._roots[0].offset if self._roots else 0
        last = self._roots[-1].offset if self._roots else 0
        _patch_root_offsets(out, first, last)
        for node in order:
            out += struct.pack("<HHI", 0xFFFE, 0xE000, len(node.body))
            out += node.body
        out += struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)  # sequence delimitation item
        return bytes(out)


# the encoded record body, Explicit VR Little Endian, starts (PS3.3 Table F.3-3):
# (0004,1400) UL 4: tag 4 + VR 2 + length 2 + value 4; (0004,1410) US: 10 bytes; (0004,1420) UL
_NEXT_AT: Final = 8
_LOWER_AT: Final = 12 + 10 + 8
_RECORD_HEAD: Final = struct.pack("<HH2sH", 0x0004, 0x1400, b"UL", 4)
_ROOT_FIRST_TAG: Final = struct.pack("<HH2sH", 0x0004, 0x1200, b"UL", 4)
_ROOT_LAST_TAG: Final = struct.pack("<HH2sH", 0x0004, 0x1202, b"UL", 4)


def _patch_root_offsets(out: bytearray, first: int, last: int) -> None:
    """Set (0004,1200) and (0004,1202) in the encoded Basic Directory."""
    for tag, value in ((_ROOT_FIRST_TAG, first), (_ROOT_LAST_TAG, last)):
        at = out.index(tag, 132)
        struct.pack_into("<I", out, at + 8, value)


def _preorder(nodes: Iterable[_Node]) -> Iterable[_Node]:
    for node in nodes:
        yield node
        yield from _preorder(node.children)


def _sibling_lists(roots: list[_Node]) -> Iterable[list[_Node]]:
    yield roots
    for node in _preorder(roots):
        if node.children:
            yield node.children


def _encode(record: Dataset) -> bytearray:
    """A directory record's body as Explicit VR Little Endian, its offsets zero (laid out by
    :meth:`FileSetBuilder.encode`)."""
    record.OffsetOfTheNextDirectoryRecord = 0
    record.RecordInUseFlag = 0xFFFF
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, record)
    body = bytearray(buffer.getvalue())
    if not body.startswith(_RECORD_HEAD):  # pragma: no cover - pydicom writes in tag order
        raise AssertionError("unexpected directory record layout")
    return body


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _invented_patient(study_uid: str) -> str:
    """A PatientID for a study held without one (module docstring)."""
    return "NOID-" + hashlib.sha256(study_uid.encode("ascii")).hexdigest()[:12].upper()


def _charset(record: Dataset) -> Dataset:
    """PS3.3 §F.3.2.2: (0008,0005) is Type 1C, required when a key uses a character set other
    than the default. The values are Unicode here (decoded at ingest, whatever the instance's
    own character set), so a record with a non-ASCII value is written in UTF-8 (ISO_IR 192),
    which holds every one of them."""
    if "SpecificCharacterSet" in record:
        del record.SpecificCharacterSet
    for element in record:
        if element.VR in _TEXT_VRS and element.value is not None:
            values = element.value if element.VM > 1 else [element.value]
            if not all(str(v).isascii() for v in values):
                record.SpecificCharacterSet = "ISO_IR 192"
                break
    return record


_TEXT_VRS: Final = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC"})


def _patient_record(study: Dataset, patient_id: str) -> Dataset:
    """PS3.3 §F.5.1."""
    record = Dataset()
    record.DirectoryRecordType = "PATIENT"
    record.PatientName = study.get("PatientName")
    record.PatientID = patient_id
    return _charset(record)


def _study_record(study: Dataset, position: int) -> Dataset:
    """PS3.3 §F.5.2."""
    record = Dataset()
    record.DirectoryRecordType = "STUDY"
    record.StudyDate = _text(study, "StudyDate") or "19000101"
    record.StudyTime = _text(study, "StudyTime") or "000000"
    record.StudyDescription = study.get("StudyDescription")
    record.StudyInstanceUID = study.StudyInstanceUID
    record.StudyID = _text(study, "StudyID") or str(position)
    record.AccessionNumber = study.get("AccessionNumber")
    return _charset(record)


def _series_record(series: Dataset, position: int) -> Dataset:
    """PS3.3 §F.5.3."""
    record = Dataset()
    record.DirectoryRecordType = "SERIES"
    record.Modality = _text(series, "Modality") or "OT"
    record.SeriesInstanceUID = series.SeriesInstanceUID
    number = series.get("SeriesNumber")
    record.SeriesNumber = number if number not in (None, "") else position
    return _charset(record)


def _element(group: int, element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    """One Explicit VR Little Endian element with a 2-byte length (PS3.5 §7.1.2)."""
    if len(value) % 2:
        value += pad
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def image_record(file_id: Iterable[str], leaf: Leaf, instance_number: int) -> bytearray:
    """An IMAGE record (PS3.3 §F.5.4 and Table F.3-3), encoded as pydicom's writer encodes it
    (its offsets zero): the elements in tag order, UIs padded with NUL, the rest with space.

    >>> leaf = Leaf("1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.840.10008.1.2.1")
    >>> bytes(image_record(["PT0", "IM1"], leaf, 7)[:12])
    b'\\x04\\x00\\x00\\x14UL\\x04\\x00\\x00\\x00\\x00\\x00'
    """
    body = bytearray(_RECORD_HEAD + b"\0\0\0\0")
    body += _element(0x0004, 0x1410, b"US", struct.pack("<H", 0xFFFF), b"")
    body += _element(0x0004, 0x1420, b"UL", b"\0\0\0\0", b"")
    body += _element(0x0004, 0x1430, b"CS", b"IMAGE", b" ")
    body += _element(0x0004, 0x1500, b"CS", "\\".join(file_id).encode("ascii"), b" ")
    body += _element(0x0004, 0x1510, b"UI", leaf.sop_class_uid.encode("ascii"), b"\0")
    body += _element(0x0004, 0x1511, b"UI", leaf.sop_uid.encode("ascii"), b"\0")
    body += _element(0x0004, 0x1512, b"UI", leaf.transfer_syntax_uid.encode("ascii"), b"\0")
    body += _element(0x0020, 0x0013, b"IS", str(instance_number).encode("ascii"), b" ")
    return body


Recorder = Callable[[Dataset], Dataset]


def _leaf_record(leaf: Leaf) -> tuple[str, Dataset | None]:
    """The leaf's record type and record (without its references); None for an IMAGE record,
    which :func:`image_record` encodes."""
    record_type = leaf_record_type(leaf.sop_class_uid)
    if record_type != "IMAGE" and leaf.header is not None:
        recorder: Recorder = DIRECTORY_RECORDERS[record_type]
        try:
            record: Any = recorder(leaf.header)
        except (ValueError, AttributeError, KeyError):
            pass  # a Type 1 key missing: IMAGE below (module docstring)
        else:
            record.DirectoryRecordType = record_type
            return record_type, _charset(record)
    return "IMAGE", None


def header_from_json(data: bytes) -> Dataset:
    """A header stored as DICOM JSON (the index's attributes) as a Dataset for the record
    creators; bulk data values are left empty (records take none), and JSON pydicom cannot read
    gives an empty Dataset (its records then take invented values, module docstring).

    >>> header_from_json(b'{"00100020": {"vr": "LO", "Value": ["P1"]}}').PatientID
    'P1'
    """
    try:
        return Dataset.from_json(data.decode("utf-8"), bulk_data_uri_handler=_no_bulk_data)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        return Dataset()


def _no_bulk_data(_tag: str, _vr: str, _uri: str) -> bytes:
    return b""

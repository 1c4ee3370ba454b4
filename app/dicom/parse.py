"""One parse of a PS3.10 file into everything ingest needs (PS3.10 §7, PS3.18 §10.5, STOW-06).

:func:`parse_instance` reads the File Meta Information (PS3.10 §7.1), checks the transfer syntax,
reads the data set once with pydicom (long values deferred, so pixel data is never loaded), and
derives from that single pass:

* the index fields of the study, series and instance (:mod:`app.dicom.instance`), text decoded per
  (0008,0005) (CS-01), dates and times normalised (:mod:`app.dicom.text`), as every index database
  holds them: text without NUL or surrogates, integers within 64 bits (the DICOM JSON keeps the
  values as they are);
* the DICOM JSON of the whole data set (META-02..04) and of each query level (QIDO-21..23);
* the frame index (FRM-03/04, :mod:`app.dicom.frames`).

The common encodings (explicit or implicit VR little endian, defined lengths but for sequences
and items) are read by :mod:`app.dicom.direct`, straight from the bytes into the same DICOM JSON;
it hands anything unusual back, and the file is then read with pydicom as described above. Both
paths give identical results.

Rejections (STOW-06, PS3.18 Table I.2-2): anything that is not a readable PS3.10 file, a missing
or invalid TransferSyntaxUID, SOPClassUID, SOPInstanceUID, StudyInstanceUID or SeriesInstanceUID,
or a MediaStorageSOPInstanceUID that differs from the SOPInstanceUID is
:class:`~app.errors.InvalidInstance` (0xC000); an unknown transfer syntax is
:class:`~app.errors.TransferSyntaxNotSupported` (0xC122); a deflated data set (PS3.5 §A.5) that
inflates beyond ``max_inflated_bytes`` is :class:`~app.errors.OutOfResources` (0xA700). No other
exception escapes, and messages never contain attribute values (no PHI).
"""

import io
import re
import struct
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO, Final

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import _is_implicit_vr, _read_file_meta_info, data_element_generator
from pydicom.tag import BaseTag

from app.dicom import dicomjson, direct
from app.dicom.attributes import INSTANCE_TAGS, SERIES_TAGS, STUDY_TAGS
from app.dicom.frames import PixelDescription, build_frame_index, describe_pixels
from app.dicom.instance import (
    FrameIndex,
    InstanceFields,
    ParsedInstance,
    SeriesFields,
    StudyFields,
)
from app.dicom.text import normalize_tm, parse_da, storable
from app.dicom.uids import (
    DEFLATED,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    is_known_transfer_syntax,
    is_valid_uid,
)
from app.errors import (
    InstanceRejected,
    InstanceUidMismatch,
    InvalidInstance,
    OutOfResources,
    TransferSyntaxNotSupported,
)

__all__ = [
    "DEFAULT_BASE_PATH_TEMPLATE",
    "PART10_PREAMBLE",
    "PART10_PREFIX_LENGTH",
    "has_part10_prefix",
    "parse_instance",
]

#: PS3.10 §7.1: a 128-byte preamble, then "DICM", open a DICOM file
PART10_PREAMBLE = 128
PART10_PREFIX_LENGTH = PART10_PREAMBLE + 4


def has_part10_prefix(head: bytes) -> bool:
    """Whether ``head``, the first bytes of a file, holds the PS3.10 preamble and "DICM"
    (some STOW clients send the File Meta group without them).

    >>> has_part10_prefix(bytes(128) + b"DICM" + b"\\x02\\x00")
    True
    >>> has_part10_prefix(b"\\x02\\x00\\x01\\x00OB")
    False
    """
    return head[PART10_PREAMBLE:PART10_PREFIX_LENGTH] == b"DICM"


DEFAULT_BASE_PATH_TEMPLATE: Final = "/studies/{study}/series/{series}/instances/{instance}"
#: values longer than this are not read at parse time (pixel data, large binary values)
_DEFER_SIZE: Final = 4096
_INFLATE_CHUNK: Final = 1 << 20
#: bytes of a file object read for the direct reader at first (enough for most headers), and
#: the largest file it reads whole when they are not
_HEAD_SIZE: Final = 1 << 16
_WHOLE_MAX: Final = 1 << 25
_PIXEL_TAGS: Final = (0x7FE00010, 0x7FE00008, 0x7FE00009)

_STUDY_KEYS: Final = frozenset(f"{tag:08X}" for tag in STUDY_TAGS)
_SERIES_KEYS: Final = frozenset(f"{tag:08X}" for tag in SERIES_TAGS)
_INSTANCE_KEYS: Final = frozenset(f"{tag:08X}" for tag in INSTANCE_TAGS)


def parse_instance(
    data: bytes | bytearray | memoryview | BinaryIO,
    *,
    base_path_template: str = DEFAULT_BASE_PATH_TEMPLATE,
    inline_binary_max: int = 0,
    max_inflated_bytes: int = 1 << 30,
) -> ParsedInstance:
    """Parse a PS3.10 file once into a :class:`~app.dicom.instance.ParsedInstance`.

    Parameters
    ----------
    data
        The whole file, as bytes or as a seekable binary file positioned at its first byte
        (frame offsets are relative to that byte).
    base_path_template
        Formatted with ``study``, ``series`` and ``instance`` UIDs into the path that
        ``BulkDataURI`` values start with (relative to the service root).
    inline_binary_max
        Binary values up to this size go inline as base64 (META-03); 0 makes every one bulk data.
    max_inflated_bytes
        Limit on the inflated size of a deflated data set (a larger one is refused).

    Raises
    ------
    InvalidInstance, TransferSyntaxNotSupported, OutOfResources
        See the module docstring.
    """
    try:
        if isinstance(data, bytes | bytearray | memoryview):
            buf = data if isinstance(data, bytes) else bytes(data)
            parsed = _parse_direct(buf, len(buf), None, base_path_template, inline_binary_max)
            fp: BinaryIO = io.BytesIO(buf)
        else:
            fp = data
            parsed = _parse_direct_file(fp, base_path_template, inline_binary_max)
        if parsed is not None:
            return parsed
        return _parse(fp, base_path_template, inline_binary_max, max_inflated_bytes)
    except InstanceRejected:
        raise
    except Exception as exc:  # any pydicom / struct / codec failure on a corrupt file
        raise InvalidInstance(f"unreadable DICOM data ({type(exc).__name__})") from exc


def _parse(
    fp: BinaryIO, base_path_template: str, inline_binary_max: int, max_inflated: int
) -> ParsedInstance:
    start = fp.tell()
    end = fp.seek(0, io.SEEK_END)
    fp.seek(start)
    head = fp.read(128)
    preamble: bytes | None = head
    if len(head) < 128 or fp.read(4) != b"DICM":
        # PS3.10 §7.1 wants the preamble and "DICM", but dicomweb-client and other STOW clients
        # send the File Meta group without them: accept that, refuse data with no File Meta
        fp.seek(start)
        if fp.read(2) != b"\x02\x00":
            raise InvalidInstance("not a DICOM PS3.10 file (no File Meta Information)")
        fp.seek(start)
        preamble = None
    meta = _read_file_meta_info(fp)
    transfer_syntax = _meta_uid(meta, "TransferSyntaxUID")
    if transfer_syntax is None:
        raise InvalidInstance("File Meta TransferSyntaxUID missing or invalid")
    if not is_known_transfer_syntax(transfer_syntax):
        raise TransferSyntaxNotSupported(f"transfer syntax {transfer_syntax} is not supported")
    notes: list[str] = []

    deflated = transfer_syntax in DEFLATED
    source: BinaryIO = fp
    if deflated:
        source = io.BytesIO(_inflate(fp, max_inflated))
        end = source.seek(0, io.SEEK_END)
        source.seek(0)
    ds = _read_dataset(source, transfer_syntax, meta, preamble, end, notes)

    metadata = dicomjson.dataset_to_dict(
        ds, base_path="\0", inline_binary_max=inline_binary_max, little_endian=True
    )
    has_pixels = any(tag in ds for tag in _PIXEL_TAGS)

    def frames() -> FrameIndex | None:
        if not has_pixels:
            return None
        if deflated:
            # the counts are checked on the inflated data set (Explicit VR Little Endian, PS3.5
            # §A.5), whose offsets are not the stored file's: no index
            _frame_index(ds, metadata, source, 0, EXPLICIT_VR_LITTLE_ENDIAN, notes)
            return None
        return _frame_index(ds, metadata, fp, start, transfer_syntax, notes)

    return _finish(
        metadata,
        transfer_syntax,
        _meta_uid(meta, "MediaStorageSOPInstanceUID"),
        base_path_template,
        lambda base_path: _set_base_path(metadata, base_path),
        has_pixels,
        frames,
        notes,
    )


def _finish(
    metadata: dicomjson.JsonObject,
    transfer_syntax: str,
    media_sop_uid: str | None,
    base_path_template: str,
    set_base_path: Callable[[str], None],
    has_pixels: bool,
    frames: Callable[[], FrameIndex | None],
    notes: list[str],
) -> ParsedInstance:
    """The checks and results common to both readers, from the DICOM JSON of the data set
    (its BulkDataURIs start with the ``"\\0"`` placeholder that ``set_base_path`` replaces)."""
    study_uid = _uid(metadata, "0020000D", "StudyInstanceUID")
    series_uid = _uid(metadata, "0020000E", "SeriesInstanceUID")
    sop_uid = _uid(metadata, "00080018", "SOPInstanceUID")
    sop_class_uid = _uid(metadata, "00080016", "SOPClassUID")
    if media_sop_uid != sop_uid:
        raise InstanceUidMismatch("MediaStorageSOPInstanceUID does not match SOPInstanceUID")

    set_base_path(base_path_template.format(study=study_uid, series=series_uid, instance=sop_uid))
    frame_index = frames()

    study_json = {k: v for k, v in metadata.items() if k in _STUDY_KEYS or k.startswith("0010")}
    series_json = {k: v for k, v in metadata.items() if k in _SERIES_KEYS}
    instance_json = {k: v for k, v in metadata.items() if k in _INSTANCE_KEYS}
    number_of_frames = _int(metadata, "00280008")
    return ParsedInstance(
        study=_study_fields(metadata, study_uid),
        series=_series_fields(metadata, series_uid),
        instance=InstanceFields(
            sop_uid=sop_uid,
            sop_class_uid=sop_class_uid,
            transfer_syntax_uid=transfer_syntax,
            instance_number=_int(metadata, "00200013"),
            rows=_int(metadata, "00280010"),
            columns=_int(metadata, "00280011"),
            bits_allocated=_int(metadata, "00280100"),
            number_of_frames=(number_of_frames or 1) if has_pixels else None,
        ),
        study_json=dicomjson.dumps(study_json),
        series_json=dicomjson.dumps(series_json),
        instance_json=dicomjson.dumps(instance_json),
        metadata_json=dicomjson.dumps(metadata),
        frames=frame_index,
        notes=tuple(notes),
    )


# --- the direct reader (app.dicom.direct) ---


def _parse_direct_file(
    fp: BinaryIO, base_path_template: str, inline_binary_max: int
) -> ParsedInstance | None:
    """:func:`_parse_direct` of a file object, reading only its first bytes when they suffice
    (leaves ``fp`` where it found it)."""
    start = fp.tell()
    size = fp.seek(0, io.SEEK_END) - start
    try:
        for limit in (_HEAD_SIZE, _WHOLE_MAX):
            fp.seek(start)
            head = fp.read(min(size, limit))
            try:
                return _parse_direct(head, size, (fp, start), base_path_template, inline_binary_max)
            except direct.Incomplete:
                if size <= limit:
                    return None
        return None
    finally:
        fp.seek(start)


def _parse_direct(
    buf: bytes,
    size: int,
    source: tuple[BinaryIO, int] | None,
    base_path_template: str,
    inline_binary_max: int,
) -> ParsedInstance | None:
    """Parse with :mod:`app.dicom.direct`; ``None`` when it leaves the file to pydicom.

    ``buf`` is the file, or its first bytes when ``source`` gives the file object (and the
    offset of the file in it) to read frame data from; ``size`` is the file's size. Raises
    :class:`~app.dicom.direct.Incomplete` when ``buf`` is too short.
    """
    try:
        if buf[128:132] == b"DICM":
            pos = 132
        elif buf[:2] == b"\x02\x00":
            pos = 0
        else:
            return None
        meta, pos = direct.read_file_meta(buf, pos)
        transfer_syntax = _raw_uid(meta.get(0x00020010))
        if (
            transfer_syntax is None
            or not is_known_transfer_syntax(transfer_syntax)
            or transfer_syntax in DEFLATED
            or transfer_syntax == EXPLICIT_VR_BIG_ENDIAN
        ):
            return None
        read = direct.read_dataset(
            buf,
            pos,
            size,
            implicit=transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN,
            inline_binary_max=inline_binary_max,
            base_path="\0",
        )
    except direct.Incomplete:
        if source is None:  # pragma: no cover - all of the file is in buf
            return None
        raise
    except Exception:  # direct.Unsupported, or anything the general path must judge
        return None
    metadata = read.metadata
    notes: list[str] = []

    def set_base_path(base_path: str) -> None:
        for attribute in read.bulk:
            attribute["BulkDataURI"] = base_path + attribute["BulkDataURI"][1:]

    def frames() -> FrameIndex | None:
        if not read.pixels:
            return None
        if source is None:

            def read_bytes(offset: int, length: int) -> bytes:
                return buf[offset : offset + length]

        else:
            fp, start = source

            def read_bytes(offset: int, length: int) -> bytes:
                fp.seek(start + offset)
                return fp.read(length)

        for tag, key, bits in _PIXEL_ELEMENTS:
            found = read.pixels.get(tag)
            if found is not None:
                pixels = _pixel_description(metadata, tag, key, bits, found[0], found[1], None)
                return build_frame_index(pixels, transfer_syntax, read_bytes, notes=notes)
        return None  # pragma: no cover - read.pixels holds only _PIXEL_ELEMENTS tags

    return _finish(
        metadata,
        transfer_syntax,
        _raw_uid(meta.get(0x00020003)),
        base_path_template,
        set_base_path,
        bool(read.pixels),
        frames,
        notes,
    )


# --- reading ---


def _inflate(fp: BinaryIO, limit: int) -> bytes:
    """Inflate the raw deflate stream after the File Meta (PS3.5 §A.5), at most ``limit`` bytes."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    while not inflater.eof and (chunk := fp.read(_INFLATE_CHUNK)):
        pending = chunk
        while pending and not inflater.eof:
            out += inflater.decompress(pending, limit + 1 - len(out))
            if len(out) > limit:
                raise OutOfResources(f"deflated data set inflates beyond {limit} bytes")
            pending = inflater.unconsumed_tail
    if not inflater.eof:
        raise InvalidInstance("deflated data set is truncated")
    return bytes(out)


def _read_dataset(
    fp: BinaryIO,
    transfer_syntax: str,
    meta: FileMetaDataset,
    preamble: bytes | None,
    end: int,
    notes: list[str],
) -> FileDataset:
    """Read the data set at ``fp``'s position, refusing truncated element values."""
    implicit = transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN
    little = transfer_syntax != EXPLICIT_VR_BIG_ENDIAN
    position = fp.tell()
    # pydicom's check for a data set whose VR encoding contradicts its transfer syntax
    detected = _is_implicit_vr(fp, implicit, little, None, is_sequence=False)
    if detected != implicit:
        notes.append("data set VR encoding differs from its transfer syntax")
        implicit = detected
    fp.seek(position)
    elements: dict[BaseTag, Any] = {}
    try:
        for elem in data_element_generator(fp, implicit, little, defer_size=_DEFER_SIZE):
            elements[elem.tag] = elem
    except EOFError as exc:
        raise InvalidInstance("truncated DICOM data set") from exc
    last_end = position
    for elem in elements.values():
        if isinstance(elem, RawDataElement) and elem.length != 0xFFFFFFFF:
            value_end = elem.value_tell + elem.length
            short = elem.value is not None and len(elem.value) != elem.length
            if value_end > end or short:
                raise InvalidInstance("truncated DICOM data set")
            last_end = max(last_end, value_end)
    if 0 < end - last_end < 8 and all(isinstance(e, RawDataElement) for e in elements.values()):
        notes.append("trailing bytes after the last data element")
    ds = FileDataset(fp, Dataset(elements), preamble, meta, implicit, little)
    ds.set_original_encoding(implicit, little, None)
    return ds


def _frame_index(
    ds: Dataset,
    metadata: dicomjson.JsonObject,
    fp: BinaryIO,
    start: int,
    transfer_syntax: str,
    notes: list[str],
) -> FrameIndex | None:
    pixels = _describe_pixels(ds, metadata, start)
    if pixels is None:
        notes.append("frame index: pixel data built in memory, without file offsets")
        return None

    def read(offset: int, length: int) -> bytes:
        fp.seek(start + offset)
        return fp.read(length)

    return build_frame_index(
        pixels,
        transfer_syntax,
        read,
        extended_offsets=_table(ds, 0x7FE00001, "Extended Offset Table", pixels.number_of_frames),
        extended_lengths=_table(
            ds, 0x7FE00002, "Extended Offset Table Lengths", pixels.number_of_frames
        ),
        notes=notes,
    )


def _table(ds: Dataset, tag: int, name: str, frames: int) -> list[int] | None:
    """A 64-bit table of ``ds`` (Extended Offset Table or its lengths), None when absent;
    InvalidInstance when it is not one entry per frame (checked before it is unpacked: its
    length comes from the file)."""
    if tag not in ds or not ds[tag].value:
        return None
    table = bytes(ds[tag].value)
    if len(table) != 8 * frames:
        raise InvalidInstance(f"the {name} has {len(table) / 8:g} entries for {frames} frames")
    return list(struct.unpack(f"<{frames}Q", table))


def _describe_pixels(
    ds: Dataset, metadata: dicomjson.JsonObject, start: int
) -> PixelDescription | None:
    """Like ``frames.describe_pixels``, but reads the image attributes from the DICOM JSON
    already built (converting them again through pydicom costs more than the whole JSON)."""
    for tag, key, bits in _PIXEL_ELEMENTS:
        elem = ds.get_item(tag, keep_deferred=True)
        if elem is None:
            continue
        if not isinstance(elem, RawDataElement):
            return describe_pixels(ds, start)
        return _pixel_description(
            metadata, tag, key, bits, elem.value_tell - start, elem.length, elem.VR
        )
    return None


def _pixel_description(
    metadata: dicomjson.JsonObject,
    tag: int,
    key: str,
    bits: int | None,
    value_offset: int,
    length: int,
    vr: str | None,
) -> PixelDescription:
    rows, columns = _int(metadata, "00280010"), _int(metadata, "00280011")
    allocated = bits if bits is not None else _int(metadata, "00280100")
    if rows is None or columns is None or allocated is None:
        raise InvalidInstance("pixel data without Rows, Columns or BitsAllocated")
    frames = _count(metadata, "00280008", "NumberOfFrames")
    samples = _count(metadata, "00280002", "SamplesPerPixel")
    return PixelDescription(
        tag=tag,
        vr=metadata[key]["vr"] if key in metadata else vr,
        value_offset=value_offset,
        length=length,
        number_of_frames=frames if frames is not None else 1,
        rows=rows,
        columns=columns,
        samples_per_pixel=samples if samples is not None else 1,
        bits_allocated=allocated,
        photometric_interpretation=(_str(metadata, "00280004") or "").strip(),
    )


_PIXEL_ELEMENTS: Final = (
    (0x7FE00010, "7FE00010", None),
    (0x7FE00008, "7FE00008", 32),
    (0x7FE00009, "7FE00009", 64),
)


# --- values out of the DICOM JSON ---


def _meta_uid(meta: FileMetaDataset, keyword: str) -> str | None:
    elem = meta._dict.get(_META_TAGS[keyword])
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes):  # still raw (pydicom converts on access, which is slow)
        return _raw_uid(value)
    text = str(value).rstrip("\x00 ").strip()
    return text if is_valid_uid(text) else None


def _raw_uid(value: bytes | None) -> str | None:
    """A File Meta UID from its encoded value, ``None`` if absent or invalid."""
    if value is None:
        return None
    text = value.decode("ascii", errors="replace").rstrip("\x00 ").strip()
    return text if is_valid_uid(text) else None


_META_TAGS: Final = {
    "TransferSyntaxUID": BaseTag(0x00020010),
    "MediaStorageSOPInstanceUID": BaseTag(0x00020003),
}


def _values(obj: dicomjson.JsonObject, key: str) -> list[Any]:
    attribute = obj.get(key)
    if not attribute:
        return []
    values = attribute.get("Value")
    return values if isinstance(values, list) else []


def _uid(obj: dicomjson.JsonObject, key: str, keyword: str) -> str:
    values = _values(obj, key)
    if len(values) != 1 or not is_valid_uid(values[0]):
        raise InvalidInstance(f"{keyword} missing or invalid")
    uid: str = values[0]
    return uid


def _str(obj: dicomjson.JsonObject, key: str) -> str | None:
    values = _values(obj, key)
    first = values[0] if values else None
    if first is None:
        return None
    if isinstance(first, dict):  # PN: groups joined by "=" (trailing empty groups dropped)
        groups = [first.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
        while groups and not groups[-1]:
            groups.pop()
        return "=".join(groups) or None
    return str(first)


#: the integers an index column holds (BIGINT)
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1


def _text(obj: dicomjson.JsonObject, key: str) -> str | None:
    """:func:`_str` as an index column holds it (:func:`~app.dicom.text.storable`)."""
    text = _str(obj, key)
    return storable(text) if text is not None else None


def _int(obj: dicomjson.JsonObject, key: str) -> int | None:
    """The first value as an integer an index column holds (64 bits: IS reaches 12 digits, and
    an explicit VR may make any integer attribute UL or SV), else ``None``."""
    values = _values(obj, key)
    first = values[0] if values else None
    if isinstance(first, float) and first.is_integer():
        first = int(first)  # a float VR (FD) given to an integer attribute
    if isinstance(first, int) and not isinstance(first, bool) and _INT_MIN <= first <= _INT_MAX:
        return first
    return None  # absent, beyond 64 bits, or junk text kept as a string in the JSON


def _count(obj: dicomjson.JsonObject, key: str, keyword: str) -> int | None:
    """A count (NumberOfFrames, SamplesPerPixel): None when absent or empty, InvalidInstance when
    not an integer (a value that cannot be trusted must not be taken as 1, issue 19)."""
    values = _values(obj, key)
    if not values or values[0] is None:
        return None
    number = _int(obj, key)
    if number is None:
        raise InvalidInstance(f"{keyword} is not an integer")
    return number


def _all(obj: dicomjson.JsonObject, key: str) -> str | None:
    values = _values(obj, key)
    return storable("\\".join(v or "" for v in values)) if values else None


_TIMEZONE_RE: Final = re.compile(r"[+-][0-9]{4}", re.ASCII)


def _timezone_offset(obj: dicomjson.JsonObject) -> str | None:
    """TimezoneOffsetFromUTC (0008,0201) when it is ``&ZZXX`` (PS3.3 C.12.1.1.8), else ``None``
    (its column is SH-sized; the DICOM JSON keeps any other value)."""
    text = _str(obj, "00080201")
    return text if text is not None and _TIMEZONE_RE.fullmatch(text) else None


def _study_fields(obj: dicomjson.JsonObject, study_uid: str) -> StudyFields:
    study_date = _str(obj, "00080020")
    study_time = _str(obj, "00080030")
    birth_date = _str(obj, "00100030")
    return StudyFields(
        study_uid=study_uid,
        patient_id=_text(obj, "00100020"),
        patient_name=_text(obj, "00100010"),
        issuer_of_patient_id=_text(obj, "00100021"),
        patient_birth_date=parse_da(birth_date) if birth_date else None,
        patient_sex=_text(obj, "00100040"),
        study_date=parse_da(study_date) if study_date else None,
        study_time=normalize_tm(study_time) if study_time else None,
        accession_number=_text(obj, "00080050"),
        referring_physician_name=_text(obj, "00080090"),
        study_id=_text(obj, "00200010"),
        study_description=_text(obj, "00081030"),
        timezone_offset=_timezone_offset(obj),
        specific_character_set=_all(obj, "00080005"),
    )


def _series_fields(obj: dicomjson.JsonObject, series_uid: str) -> SeriesFields:
    series_date = _str(obj, "00080021")
    series_time = _str(obj, "00080031")
    pps_date = _str(obj, "00400244")
    pps_time = _str(obj, "00400245")
    sps_ids: list[str] = []
    rp_ids: list[str] = []
    for item in _values(obj, "00400275"):  # RequestAttributesSequence
        if isinstance(item, dict):
            sps = _text(item, "00400009")  # ScheduledProcedureStepID
            rp = _text(item, "00401001")  # RequestedProcedureID
            if sps:
                sps_ids.append(sps)
            if rp:
                rp_ids.append(rp)
    return SeriesFields(
        series_uid=series_uid,
        modality=_text(obj, "00080060"),
        series_number=_int(obj, "00200011"),
        series_description=_text(obj, "0008103E"),
        series_date=parse_da(series_date) if series_date else None,
        series_time=normalize_tm(series_time) if series_time else None,
        body_part_examined=_text(obj, "00180015"),
        pps_start_date=parse_da(pps_date) if pps_date else None,
        pps_start_time=normalize_tm(pps_time) if pps_time else None,
        scheduled_procedure_step_ids=tuple(sps_ids),
        requested_procedure_ids=tuple(rp_ids),
    )


def _set_base_path(obj: dicomjson.JsonObject, base_path: str) -> None:
    """Replace the ``"\\0"`` placeholder base of every BulkDataURI (the UIDs come from the JSON)."""
    _walk_bulk(obj, lambda uri: base_path + uri[1:])


def _walk_bulk(obj: dicomjson.JsonObject, fix: Callable[[str], str]) -> None:
    for attribute in obj.values():
        uri = attribute.get("BulkDataURI")
        if uri is not None:
            attribute["BulkDataURI"] = fix(uri)
        elif attribute.get("vr") == "SQ":
            for item in attribute.get("Value", ()):
                _walk_bulk(item, fix)

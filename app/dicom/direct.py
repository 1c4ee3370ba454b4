"""PS3.10 bytes -> DICOM JSON in one pass, for the common encodings (the fast path of parse).

:func:`read_file_meta` and :func:`read_dataset` read the File Meta group and a little-endian data
set (explicit or implicit VR) straight from the bytes and build the DICOM JSON object that
:func:`app.dicom.dicomjson.dataset_to_dict` builds from the pydicom data set of the same file,
value for value (the values themselves go through :func:`app.dicom.dicomjson.value_json`), without
creating pydicom elements or data sets.

They give up, raising :class:`Unsupported`, on anything they do not reproduce exactly, and the
caller then reads the file with pydicom (:mod:`app.dicom.parse`): big endian and deflated data
sets (never passed to them), undefined lengths except those of sequences, items and binary values
(encapsulated pixel data), an explicit VR that is ``UN`` or not a standard one, private or
ambiguous-VR elements of an implicit VR data set, a data set whose VR encoding contradicts its
transfer syntax, tags out of order or repeated, values running past their data set or the file,
a top-level text value too long for pydicom to read eagerly (see :data:`DEFER_SIZE`), a text or
sequence element before (0008,0005), an Extended Offset Table, and trailing bytes.
"""

import struct
from collections.abc import Sequence
from typing import Final

from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR

from app.dicom.dicomjson import ALWAYS_BULK_TAGS, BINARY_VRS, JsonObject, inline_binary, value_json

__all__ = [
    "DEFER_SIZE",
    "DirectResult",
    "Incomplete",
    "Unsupported",
    "read_dataset",
    "read_file_meta",
]

#: pydicom's ``defer_size`` of the general path: longer top-level values are not read
DEFER_SIZE: Final = 4096

_HEADER: Final = struct.Struct("<HHL")  # implicit VR element header, item and delimiter tags
_EXPLICIT: Final = struct.Struct("<HH2sH")  # explicit VR element header, 16-bit length
_LENGTH32: Final = struct.Struct("<L")
_UNDEFINED: Final = 0xFFFFFFFF
_ITEM: Final = 0xFFFEE000
_ITEM_DELIMITER: Final = 0xFFFEE00D
_SEQUENCE_DELIMITER: Final = 0xFFFEE0DD
_DELIMITER_BYTES: Final = b"\xfe\xff\xdd\xe0"
_CHARSET: Final = 0x00080005
_EXTENDED_OFFSET_TABLE: Final = 0x7FE00001
_PIXEL_TAGS: Final = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_SKIPPED_TAGS: Final = frozenset({0xFFFAFFFA, 0xFFFCFFFC})  # as dicomjson: trailing padding
_DEFAULT_ENCODINGS: Final = ("iso8859",)
_CHARSET_VRS: Final = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
# PS3.5 Table 7.1-1: explicit VRs with a 2-byte reserved field and a 4-byte length
_LONG_VRS: Final = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
# every standard VR except UN (whose real VR pydicom may look up in the dictionaries)
_STANDARD_VRS: Final = (
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UR US "
    "UT UV"
)
_VRS: Final = {vr.encode(): vr for vr in _STANDARD_VRS.split()}

#: tag -> "GGGGEEEE" JSON key (bounded by the number of distinct tags seen, capped)
_KEYS: dict[int, str] = {}
#: tag -> VR of an implicit VR element ("" when this reader leaves the element to pydicom)
_IMPLICIT_VRS: dict[int, str] = {}
#: raw (0008,0005) value -> Python encodings
_ENCODINGS: dict[bytes, tuple[str, ...]] = {}
_CACHE_MAX: Final = 65536


class Unsupported(Exception):
    """Something this reader does not reproduce exactly: read the file with pydicom instead."""


class Incomplete(Unsupported):
    """The bytes given end before a value or header that has to be read (see ``read_dataset``)."""


class DirectResult:
    """The DICOM JSON of a data set and what ``parse`` needs besides it."""

    __slots__ = ("bulk", "metadata", "pixels")

    def __init__(self) -> None:
        #: the DICOM JSON object (``dataset_to_dict`` output)
        self.metadata: JsonObject = {}
        #: every attribute object holding a ``BulkDataURI``, nested ones included
        self.bulk: list[JsonObject] = []
        #: top-level pixel data elements: tag -> (absolute value offset, value length)
        self.pixels: dict[int, tuple[int, int]] = {}


def read_file_meta(buf: bytes, pos: int) -> tuple[dict[int, bytes], int]:
    """Read the File Meta group (explicit VR little endian) at ``pos``.

    Returns the raw value of each element and the offset of the first element after the group.

    >>> meta, end = read_file_meta(b"\\x02\\x00\\x10\\x00UI\\x04\\x001.2\\x00\\x08\\x00", 0)
    >>> meta, end
    ({131088: b'1.2\\x00'}, 12)
    """
    meta: dict[int, bytes] = {}
    size = len(buf)
    while pos + 8 <= size:
        group, element, raw_vr, length = _EXPLICIT.unpack_from(buf, pos)
        if group != 0x0002:
            if group == 0xFFFE:
                raise Unsupported("delimiter after the File Meta")
            break
        vr = _VRS.get(raw_vr)
        if vr is None:
            raise Unsupported("File Meta element with an unusual VR")
        if vr in _LONG_VRS:
            if pos + 12 > size:
                raise Unsupported("truncated File Meta")
            length = _LENGTH32.unpack_from(buf, pos + 8)[0]
            pos += 12
        else:
            pos += 8
        if length == _UNDEFINED or pos + length > size:
            raise Unsupported("File Meta element of undefined or excessive length")
        meta[0x00020000 | element] = buf[pos : pos + length]
        pos += length
    if not meta:
        raise Unsupported("no File Meta elements")
    return meta, pos


def read_dataset(
    buf: bytes,
    pos: int,
    end: int,
    *,
    implicit: bool,
    inline_binary_max: int,
    base_path: str,
) -> DirectResult:
    """Read the data set from ``pos`` to ``end`` (the end of the file) into DICOM JSON.

    The result's metadata equals ``dataset_to_dict(ds, base_path=base_path,
    inline_binary_max=inline_binary_max)`` for ``ds`` read by pydicom with a ``defer_size`` of
    :data:`DEFER_SIZE`; raises :class:`Unsupported` when that cannot be guaranteed.

    ``buf`` may hold only the first bytes of the file: values that are not read (longer than
    :data:`DEFER_SIZE` and bulk data) need not be in it. :class:`Incomplete` is raised when a
    header or value that has to be read is not.
    """
    if implicit and end - pos >= 6 and 0x40 < buf[pos + 4] < 0x5B and 0x40 < buf[pos + 5] < 0x5B:
        # pydicom would switch to explicit VR (parse notes it)
        raise Unsupported("implicit VR data set that looks explicit")
    result = DirectResult()
    reader = _Reader(buf, implicit, inline_binary_max, result)
    result.metadata, _ = reader.dataset(pos, end, False, f"{base_path}/bulkdata", None)
    return result


class _Reader:
    """The recursive reader of one data set and its sequence items."""

    __slots__ = ("avail", "buf", "implicit", "inline_binary_max", "result")

    def __init__(
        self, buf: bytes, implicit: bool, inline_binary_max: int, result: DirectResult
    ) -> None:
        self.buf = buf
        self.implicit = implicit
        self.inline_binary_max = inline_binary_max
        self.result = result
        self.avail = len(buf)

    def dataset(
        self,
        pos: int,
        stop: int,
        delimited: bool,
        prefix: str,
        parent: Sequence[str] | None,
    ) -> tuple[JsonObject, int]:
        """Read elements from ``pos`` up to ``stop`` (exactly), or up to an item delimiter if
        ``delimited``; ``parent`` is ``None`` for the top-level data set, else the encodings of
        the enclosing one. Returns the JSON object and the offset after the data set."""
        buf = self.buf
        avail = self.avail
        implicit = self.implicit
        top = parent is None
        encodings: Sequence[str] | None = None  # known once the tags pass (0008,0005)
        out: JsonObject = {}
        attribute: JsonObject
        last = -1
        while True:
            if pos >= stop:
                if pos > stop or delimited:
                    raise Unsupported("data set overruns its length, or no item delimiter")
                return out, pos
            if pos + 8 > stop:
                raise Unsupported("trailing bytes")
            if pos + 12 > avail and avail < stop:
                raise Incomplete()
            if implicit:
                group, element, length = _HEADER.unpack_from(buf, pos)
                tag = group << 16 | element
                vr = _IMPLICIT_VRS.get(tag) or _implicit_vr(tag)
                pos += 8
            else:
                group, element, raw_vr, length = _EXPLICIT.unpack_from(buf, pos)
                tag = group << 16 | element
                found = _VRS.get(raw_vr)
                if found is None:
                    if tag == _ITEM_DELIMITER and delimited:
                        return out, pos + 8
                    raise Unsupported("non-standard or UN explicit VR")
                vr = found
                if vr in _LONG_VRS:
                    if pos + 12 > stop:
                        raise Unsupported("truncated element header")
                    length = _LENGTH32.unpack_from(buf, pos + 8)[0]
                    pos += 12
                else:
                    pos += 8
            if group == 0xFFFE:
                if tag == _ITEM_DELIMITER and delimited:
                    return out, pos
                raise Unsupported("item or delimiter tag inside a data set")
            if tag <= last:
                raise Unsupported("tags out of order or repeated")
            last = tag
            if encodings is None and tag >= _CHARSET:
                encodings = _DEFAULT_ENCODINGS if top else parent
                if tag == _CHARSET:
                    if length == _UNDEFINED or pos + length > stop:
                        raise Unsupported("unusual Specific Character Set")
                    if pos + length > avail:
                        raise Incomplete()
                    encodings = _encodings(buf[pos : pos + length])
            skip = not element or group <= 0x0002 or tag in _SKIPPED_TAGS
            if length == _UNDEFINED and vr != "SQ":
                if vr not in BINARY_VRS and tag not in ALWAYS_BULK_TAGS:
                    raise Unsupported("undefined length text or number")
                # encapsulated pixel data: pydicom takes the value up to the first sequence
                # delimiter tag, wherever it is (PS3.5 §A.4)
                delimiter = buf.find(_DELIMITER_BYTES, pos)
                if delimiter < 0 or delimiter + 8 > stop:
                    if avail < stop:
                        raise Incomplete()
                    raise Unsupported("undefined length value without a delimiter")
                if top and tag in _PIXEL_TAGS:
                    self.result.pixels[tag] = (pos, length)
                if not skip:
                    attribute = {"vr": vr}
                    if delimiter > pos:
                        attribute["BulkDataURI"] = f"{prefix}/{tag:08X}"
                        self.result.bulk.append(attribute)
                    out[_KEYS.get(tag) or _key(tag)] = attribute
                pos = delimiter + 8
                continue
            if length == _UNDEFINED:
                if encodings is None:
                    raise Unsupported("sequence before (0008,0005)")
                items, pos = self.sequence(pos, stop, True, f"{prefix}/{tag:08X}", encodings)
                if not skip:
                    out[_KEYS.get(tag) or _key(tag)] = (
                        {"vr": vr, "Value": items} if items else {"vr": vr}
                    )
                continue
            value_end = pos + length
            if value_end > stop:
                raise Unsupported("value runs past its data set")
            if skip:
                pos = value_end
                continue
            deferred = top and length > DEFER_SIZE and tag != _CHARSET
            if value_end > avail and not deferred:
                raise Incomplete()
            if vr in BINARY_VRS or tag in ALWAYS_BULK_TAGS:
                if top and tag in _PIXEL_TAGS:
                    self.result.pixels[tag] = (pos, length)
                elif tag == _EXTENDED_OFFSET_TABLE:
                    raise Unsupported("Extended Offset Table")
                if length == 0:
                    attribute = {"vr": vr}
                elif tag in ALWAYS_BULK_TAGS or length > self.inline_binary_max:
                    attribute = {"vr": vr, "BulkDataURI": f"{prefix}/{tag:08X}"}
                    self.result.bulk.append(attribute)
                elif deferred:
                    raise Unsupported("deferred value to inline")
                else:
                    attribute = {"vr": vr, "InlineBinary": inline_binary(buf[pos:value_end])}
            elif length == 0:
                attribute = {"vr": vr}
            elif vr == "SQ":
                # (pydicom reads a long one on access, then parses it the same way)
                if encodings is None:
                    raise Unsupported("sequence before (0008,0005)")
                if value_end > avail:
                    raise Incomplete()
                items, _ = self.sequence(pos, value_end, False, f"{prefix}/{tag:08X}", encodings)
                attribute = {"vr": vr, "Value": items} if items else {"vr": vr}
            elif deferred:
                raise Unsupported("long text value, converted by pydicom on access")
            elif vr in _CHARSET_VRS:
                if encodings is None:
                    raise Unsupported("text before (0008,0005)")
                attribute = value_json(vr, buf[pos:value_end], encodings)
            else:
                attribute = value_json(vr, buf[pos:value_end], _DEFAULT_ENCODINGS)
            out[_KEYS.get(tag) or _key(tag)] = attribute
            pos = value_end

    def sequence(
        self, pos: int, stop: int, delimited: bool, prefix: str, encodings: Sequence[str]
    ) -> tuple[list[JsonObject], int]:
        """Read the items from ``pos`` up to ``stop`` (exactly), or up to the sequence
        delimiter if ``delimited``. Returns the items' JSON objects and the offset after them."""
        buf = self.buf
        items: list[JsonObject] = []
        while True:
            if not delimited and pos == stop:
                return items, pos
            if pos + 8 > stop:
                raise Unsupported("sequence overruns its length, or no sequence delimiter")
            if pos + 8 > self.avail:
                raise Incomplete()
            group, element, length = _HEADER.unpack_from(buf, pos)
            tag = group << 16 | element
            pos += 8
            if tag == _SEQUENCE_DELIMITER and delimited:
                return items, pos
            if tag != _ITEM:
                raise Unsupported("unexpected tag in a sequence")
            item_prefix = f"{prefix}/{len(items)}"
            if length == _UNDEFINED:
                item, pos = self.dataset(pos, stop, True, item_prefix, encodings)
            else:
                if pos + length > stop:
                    raise Unsupported("item runs past its sequence")
                item, pos = self.dataset(pos, pos + length, False, item_prefix, encodings)
            items.append(item)


def _key(tag: int) -> str:
    key = f"{tag:08X}"
    if len(_KEYS) < _CACHE_MAX:
        _KEYS[tag] = key
    return key


def _implicit_vr(tag: int) -> str:
    """The VR ``dicomjson`` gives an implicit VR element of a public tag (see ``_element``)."""
    vr = _IMPLICIT_VRS.get(tag)
    if vr is None:
        if tag >> 16 & 1:
            vr = ""  # private: the VR depends on the private creator
        else:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                vr = "UL" if not tag & 0xFFFF else "UN"
            if " or " in vr:
                vr = "OW" if tag in ALWAYS_BULK_TAGS or vr == "OB or OW" else ""
        if len(_IMPLICIT_VRS) < _CACHE_MAX:
            _IMPLICIT_VRS[tag] = vr
    if not vr:
        raise Unsupported("private or ambiguous VR in an implicit VR data set")
    return vr


def _encodings(raw: bytes) -> tuple[str, ...]:
    """Python encodings of a raw (0008,0005) value, as ``dicomjson._encodings_of`` finds them."""
    found = _ENCODINGS.get(raw)
    if found is None:
        terms = [v.strip(" \x00") for v in raw.decode("latin-1").split("\\")] if raw else []
        found = tuple(convert_encodings(terms)) if any(terms) else _DEFAULT_ENCODINGS
        if len(_ENCODINGS) < 1024:
            _ENCODINGS[raw] = found
    return found

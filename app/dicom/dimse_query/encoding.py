"""A C-FIND match encoded straight from DICOM JSON (PS3.18 Annex F) into the bytes of a data set
(PS3.5 §7): Implicit or Explicit VR, little or big endian, text in the answer's character set.

A match is a handful of elements, and building a pydicom Dataset from its JSON (``from_json``)
then writing it cost about 2.5 ms, most of a study-level C-FIND's time when it has tens of
matches; encoding the elements here takes tens of microseconds. Only what the stored JSON of
the index holds is handled: strings and person names, numbers, attribute tags, sequences, and
inline binary (bulk data URIs are never sent: the element goes empty).
"""

import base64
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from pydicom.charset import convert_encodings, encode_string
from pydicom.valuerep import format_number_as_ds

__all__ = ["TEXT_VRS", "encode_elements", "texts"]

#: VRs whose values are encoded with the SpecificCharacterSet (PS3.5 §6.1.2.3)
TEXT_VRS: Final = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
#: Explicit VR elements with a 4-byte length (PS3.5 §7.1.2)
_LONG: Final = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
#: binary numbers: struct format per VR
_NUMBERS: Final = {
    "US": "H",
    "SS": "h",
    "UL": "I",
    "SL": "i",
    "FL": "f",
    "FD": "d",
    "UV": "Q",
    "SV": "q",
}
_BINARY: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: values padded with NUL rather than a space (PS3.5 §6.2)
_NUL_PADDED: Final = frozenset({"UI", "OB", "UN"})
_UNDEFINED: Final = 0xFFFFFFFF


def texts(element: Mapping[str, Any]) -> Iterable[str]:
    """The text values of a DICOM JSON element that its character set must encode (nested
    items included)."""
    vr = element.get("vr")
    values = element.get("Value") or ()
    if vr == "SQ":
        for item in values:
            for inner in item.values():
                yield from texts(inner)
    elif vr == "PN":
        for value in values:
            if isinstance(value, Mapping):
                yield from (str(v) for v in value.values() if v)
    elif vr in TEXT_VRS:
        yield from (str(v) for v in values if v is not None)


def _person_name(value: Any) -> str:
    if not isinstance(value, Mapping):
        return "" if value is None else str(value)
    groups = [str(value.get(g) or "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def _text(vr: str, values: Sequence[Any], codecs: Sequence[str]) -> bytes:
    if vr == "PN":
        # each component group encoded apart, so that code extensions reset at '=' (PS3.5
        # §6.1.2.5.3)
        names = [_person_name(v) for v in values]
        return b"\\".join(
            b"=".join(encode_string(group, codecs) for group in name.split("=")) for name in names
        )
    strings = ["" if v is None else str(v) for v in values]
    if vr in ("LT", "ST", "UT"):  # one value, backslashes are text
        return encode_string(strings[0] if strings else "", codecs)
    return b"\\".join(encode_string(s, codecs) for s in strings)


def _ascii(vr: str, values: Sequence[Any]) -> bytes:
    out = []
    for value in values:
        if value is None:
            out.append("")
        elif vr == "DS" and not isinstance(value, str):
            out.append(
                format_number_as_ds(float(value)) if isinstance(value, float) else str(value)
            )
        else:
            out.append(str(value))
    return "\\".join(out).encode("ascii", "replace")


def _value(vr: str, element: Mapping[str, Any], codecs: Sequence[str], little: bool) -> bytes:
    values: Sequence[Any] = element.get("Value") or ()
    if vr in _NUMBERS:
        order = "<" if little else ">"
        return b"".join(struct.pack(order + _NUMBERS[vr], v) for v in values if v is not None)
    if vr == "AT":
        fmt = "<HH" if little else ">HH"
        return b"".join(struct.pack(fmt, int(v[:4], 16), int(v[4:], 16)) for v in values)
    if vr in _BINARY:
        inline = element.get("InlineBinary")
        return base64.b64decode(inline) if inline else b""
    if vr in TEXT_VRS:
        return _text(vr, values, codecs)
    return _ascii(vr, values)


def _header(tag: int, vr: str, length: int, implicit: bool, little: bool) -> bytes:
    order = "<" if little else ">"
    group, element = tag >> 16, tag & 0xFFFF
    if implicit:
        return struct.pack(order + "HHI", group, element, length)
    if vr in _LONG:
        return struct.pack(order + "HH2s2xI", group, element, vr.encode(), length)
    if length > 0xFFFF:
        raise ValueError(f"({group:04X},{element:04X}) {vr}: value too long for Explicit VR")
    return struct.pack(order + "HH2sH", group, element, vr.encode(), length)


def _encode(
    elements: Mapping[str, Any],
    codecs: Sequence[str],
    implicit: bool,
    little: bool,
) -> bytes:
    out = bytearray()
    order = "<" if little else ">"
    for key in sorted(elements, key=lambda k: int(k, 16)):
        element = elements[key]
        tag, vr = int(key, 16), str(element.get("vr") or "UN")
        if vr == "SQ":
            items = bytearray()
            for item in element.get("Value") or ():
                body = _encode(item, codecs, implicit, little)
                items += struct.pack(order + "HHI", 0xFFFE, 0xE000, len(body)) + body
            out += _header(tag, vr, _UNDEFINED, implicit, little) + items
            out += struct.pack(order + "HHI", 0xFFFE, 0xE0DD, 0)
            continue
        value = _value(vr, element, codecs, little)
        if len(value) % 2:
            value += b"\0" if vr in _NUL_PADDED else b" "
        out += _header(tag, vr, len(value), implicit, little) + value
    return bytes(out)


def encode_elements(
    elements: Mapping[str, Any],
    character_set: Sequence[str],
    *,
    implicit: bool = True,
    little: bool = True,
) -> bytes:
    """The data set of the DICOM JSON ``elements`` (keys ``GGGGEEEE``), in tag order, text
    encoded for ``character_set`` (the SpecificCharacterSet terms, already checked to hold
    every value).

    >>> data = encode_elements({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^J"}]},
    ...                         "00080052": {"vr": "CS", "Value": ["STUDY"]}}, [])
    >>> data.hex(" ", 4)
    '08005200 06000000 53545544 59201000 10000600 0000446f 655e4a20'
    """
    return _encode(elements, convert_encodings(list(character_set) or None), implicit, little)

"""Dataset -> DICOM JSON Model (PS3.18 Annex F), written straight from the encoded element values.

The converter walks a pydicom :class:`~pydicom.dataset.Dataset` read from a file and turns each
still-encoded ``RawDataElement`` into its JSON form itself, instead of letting pydicom build typed
values first: that is several times faster and gives exact control over the rules below (spec
items JSON-01..10, META-02..04):

* keys are 8 upper-case hex digits in ascending order; every attribute has ``"vr"`` and at most
  one of ``Value`` / ``BulkDataURI`` / ``InlineBinary`` (F.2.2);
* strings for AE AS CS DA DT LO LT SH ST TM UC UI UR UT, numbers for FL FD SL SS UL US SV UV
  (SV/UV beyond 2^53-1 and non-finite FL/FD as strings), ``GGGGEEEE`` for AT (Table F.2.3-1);
* IS and DS as JSON numbers, as strings only when the text is not a valid number or a number
  would lose precision (F.2.3 note);
* PN values as objects holding the non-empty ``Alphabetic`` / ``Ideographic`` / ``Phonetic``
  groups, trailing empty components trimmed (F.2.2);
* backslash splits values only for SH LO PN UC CS DS IS DA TM DT AE AS UI (F.2.4/F.2.5); an empty
  value inside a list is ``null``; a zero-length attribute keeps only ``"vr"``;
* sequence items recursively, ``{}`` for an empty item, no ``Value`` for zero items (F.2.6);
* private elements keep their explicit or private-dictionary VR, else ``UN`` (F.2.2);
* group 0002 and group-length elements (gggg,0000) are left out (PS3.18 §10.4.1.1.2, F.2.2);
* PixelData, Float/Double Float Pixel Data, Encapsulated Document and every OB OD OF OL OV OW UN
  value longer than ``inline_binary_max`` become ``BulkDataURI`` values
  ``<base_path>/bulkdata/<tag>`` (nested: ``.../bulkdata/<seq tag>/<item index>/<tag>``,
  META-04); shorter ones become little-endian base64 ``InlineBinary`` (F.2.7).

Text is decoded with the data set's (0008,0005) Specific Character Set, single-byte, ISO 2022
with code extensions, GB18030 or UTF-8 alike, through :func:`pydicom.charset.decode_bytes` (CS-01);
the JSON is UTF-8 (JSON-10).
"""

import base64
import math
import re
import struct
from collections.abc import Callable, Container, Iterable, MutableMapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import numpy as np
import orjson
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filewriter import correct_ambiguous_vr_element
from pydicom.hooks import raw_element_vr
from pydicom.tag import BaseTag
from pydicom.valuerep import TEXT_VR_DELIMS, PersonName

__all__ = [
    "ALWAYS_BULK_TAGS",
    "BINARY_VRS",
    "JsonObject",
    "dataset_to_dict",
    "dataset_to_json",
    "dumps",
    "inline_binary",
    "select",
    "value_json",
]

#: one DICOM JSON object (a data set): attribute key -> attribute object
JsonObject = dict[str, Any]

#: values that are always bulk data (META-03), whatever their size
ALWAYS_BULK_TAGS: Final = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009, 0x00420011})
#: VRs whose values are InlineBinary or BulkDataURI, never ``Value`` (Table F.2.3-1)
BINARY_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: word size of the binary VRs, for byte-swapping big-endian values to little endian (F.2.7)
_BINARY_WORD: Final = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}

# PS3.18 F.2.4/F.2.5: multi-valued string VRs split on backslash; the others never do
_SPLIT_VRS: Final = frozenset(
    {"SH", "LO", "PN", "UC", "CS", "DS", "IS", "DA", "TM", "DT", "AE", "AS", "UI"}
)
# decoded with the Specific Character Set (PS3.5 §6.1.2.3); other strings are default repertoire
_CHARSET_VRS: Final = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
_STRING_VRS: Final = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
# struct format character and size of the binary numeric VRs (PS3.5 Table 6.2-1)
_NUMBER_FORMATS: Final = {
    "US": ("H", 2),
    "SS": ("h", 2),
    "UL": ("I", 4),
    "SL": ("i", 4),
    "UV": ("Q", 8),
    "SV": ("q", 8),
    "FL": ("f", 4),
    "FD": ("d", 8),
}
_MAX_SAFE_INT: Final = 2**53 - 1  # largest integer every JSON reader keeps exactly
# PS3.5 Table 6.2-1 IS and DS character repertoires, as numbers
_IS_RE: Final = re.compile(r"[+-]?[0-9]+")
_DS_RE: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_PN_GROUPS: Final = ("Alphabetic", "Ideographic", "Phonetic")
_DEFAULT_ENCODINGS: Final = ("iso8859",)  # pydicom's name for the default repertoire
_SKIPPED_TAGS: Final = frozenset({0xFFFAFFFA, 0xFFFCFFFC})  # trailing padding (PS3.10 §7.2)


_KEYS: dict[int, str] = {}  # tag -> "GGGGEEEE", filled lazily (bounded by the public dictionary)


class _Context:
    """Per-conversion settings, passed down the recursion."""

    __slots__ = ("inline_binary_max", "little_endian")

    def __init__(self, inline_binary_max: int, little_endian: bool) -> None:
        self.inline_binary_max = inline_binary_max
        self.little_endian = little_endian


def dataset_to_dict(
    ds: Dataset,
    *,
    base_path: str,
    inline_binary_max: int = 0,
    tags: Container[int] | None = None,
    little_endian: bool = True,
) -> JsonObject:
    """Convert ``ds`` to a DICOM JSON object (a dict ready for :func:`dumps`).

    Parameters
    ----------
    ds
        The data set; elements still encoded (as read by ``dcmread``) or built in memory.
    base_path
        The instance path that bulk data URIs start with, for example
        ``/studies/1.2/series/1.3/instances/1.4`` (relative to the service root, see
        :mod:`app.dicom.instance`).
    inline_binary_max
        Binary values up to this many bytes become ``InlineBinary``; longer ones, and the
        :data:`ALWAYS_BULK_TAGS` values, become ``BulkDataURI`` (0: every binary value).
    tags
        Only these top-level tags (``None``: every attribute except group 0002 and group
        lengths).
    little_endian
        Byte order of values of elements built in memory (elements read from a file carry theirs).

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset()
    >>> ds.PatientName = "Doe^John^^^"
    >>> ds.SliceThickness = "1.50"
    >>> ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    >>> dataset_to_dict(ds, base_path="/studies/1/series/2/instances/3")
    {'00080008': {'vr': 'CS', 'Value': ['ORIGINAL', None, 'AXIAL']}, \
'00100010': {'vr': 'PN', 'Value': [{'Alphabetic': 'Doe^John'}]}, \
'00180050': {'vr': 'DS', 'Value': [1.5]}}
    """
    ctx = _Context(inline_binary_max, little_endian)
    return _dataset(ds, f"{base_path}/bulkdata", _encodings_of(ds, None), ctx, tags)


def dataset_to_json(
    ds: Dataset,
    *,
    base_path: str,
    inline_binary_max: int = 0,
    tags: Container[int] | None = None,
) -> bytes:
    """:func:`dataset_to_dict` serialised as UTF-8 JSON bytes."""
    return dumps(
        dataset_to_dict(ds, base_path=base_path, inline_binary_max=inline_binary_max, tags=tags)
    )


def select(obj: JsonObject, keep: Callable[[int], bool]) -> JsonObject:
    """The attributes of a DICOM JSON object whose top-level tag satisfies ``keep``.

    >>> select({"00080060": {"vr": "CS"}, "00100010": {"vr": "PN"}}, lambda t: t >> 16 == 0x10)
    {'00100010': {'vr': 'PN'}}
    """
    return {key: value for key, value in obj.items() if keep(int(key, 16))}


def dumps(obj: JsonObject | Sequence[JsonObject]) -> bytes:
    """Serialise DICOM JSON as compact UTF-8 bytes (JSON-10)."""
    return orjson.dumps(obj)


# --- data sets and elements ---


def _encodings_of(ds: Dataset, parent: Sequence[str] | None) -> Sequence[str]:
    """Python encodings for ``ds``: its own (0008,0005), else the enclosing data set's."""
    elem = ds.get_item(0x00080005, keep_deferred=True)
    if elem is None:
        return parent if parent is not None else _DEFAULT_ENCODINGS
    if isinstance(elem, RawDataElement):
        raw = elem.value or b""
        values = raw.decode("latin-1").split("\\") if raw else []
        terms: list[str] = [v.strip(" \x00") for v in values]
    else:
        terms = [str(v) for v in _as_list(elem.value)]
    if not any(terms):
        return _DEFAULT_ENCODINGS
    return tuple(convert_encodings(terms))


def _dataset(
    ds: Dataset,
    prefix: str,
    encodings: Sequence[str],
    ctx: _Context,
    tags: Container[int] | None = None,
) -> JsonObject:
    out: JsonObject = {}
    # Dataset._dict holds the elements as read (RawDataElement until accessed); reading it
    # directly, sorted on plain ints, avoids pydicom's per-element Python-level overhead
    elements: MutableMapping[Any, Any] = ds._dict
    for tag in sorted(map(int, elements)):
        if not tag & 0xFFFF or tag >> 16 <= 0x0002 or tag in _SKIPPED_TAGS:
            continue  # group lengths, command and File Meta groups (F.2.2, §10.4.1.1.2)
        if tags is not None and tag not in tags:
            continue
        out[_key(tag)] = _element(ds, tag, elements[tag], prefix, encodings, ctx)
    return out


def _key(tag: int) -> str:
    key = _KEYS.get(tag)
    if key is None:
        key = f"{tag:08X}"
        if len(_KEYS) < 65536:
            _KEYS[tag] = key
    return key


def _element(
    ds: Dataset,
    tag: int,
    elem: RawDataElement | DataElement,
    prefix: str,
    encodings: Sequence[str],
    ctx: _Context,
) -> JsonObject:
    if isinstance(elem, RawDataElement):
        vr = elem.VR
        if vr is None or vr == "UN":
            # implicit VR, or explicit UN of a known attribute: dictionary / private dictionary
            found: dict[str, Any] = {}
            raw_element_vr(elem, found, encoding=list(encodings), ds=ds)
            vr = found["VR"]
        if " or " in vr and (tag in ALWAYS_BULK_TAGS or vr == "OB or OW"):
            vr = "OW"  # PS3.5 §A.1: implicit VR little endian encodes these as OW
        if vr == "SQ" or " or " in vr:
            # sequences are parsed by pydicom; ambiguous VRs (e.g. "US or SS") are resolved by
            # it from the data set (PS3.5 Annex A notes), both through Dataset.__getitem__
            return _element(ds, tag, ds[tag], prefix, encodings, ctx)
        return _raw(ds, tag, vr, elem, prefix, encodings, ctx)
    return _typed(ds, tag, elem, prefix, encodings, ctx)


def _raw(
    ds: Dataset,
    tag: int,
    vr: str,
    elem: RawDataElement,
    prefix: str,
    encodings: Sequence[str],
    ctx: _Context,
) -> JsonObject:
    length = elem.length
    value = elem.value
    if vr in BINARY_VRS or tag in ALWAYS_BULK_TAGS:
        if length == 0 or (value is not None and len(value) == 0):
            return {"vr": vr}
        if tag in ALWAYS_BULK_TAGS or length == 0xFFFFFFFF or length > ctx.inline_binary_max:
            return {"vr": vr, "BulkDataURI": f"{prefix}/{tag:08X}"}
        if value is None:  # deferred (only when inline_binary_max > defer size)
            value = _binary_bytes(ds[tag].value)
        return {"vr": vr, "InlineBinary": _inline(value, vr, elem.is_little_endian)}
    if value is None:
        if length == 0:
            return {"vr": vr}
        # a deferred long value: pydicom reads and converts it
        return _typed(ds, tag, ds[tag], prefix, encodings, ctx)
    if not value:
        return {"vr": vr}
    return value_json(vr, value, encodings, elem.is_little_endian)


def value_json(
    vr: str, value: bytes, encodings: Sequence[str], little_endian: bool = True
) -> JsonObject:
    """The JSON attribute of a non-empty encoded value whose VR is neither binary nor SQ.

    >>> value_json("DS", b"1.50\\\\-2 ", ("iso8859",))
    {'vr': 'DS', 'Value': [1.5, -2]}
    """
    if vr in _NUMBER_FORMATS:
        return _numbers(vr, value, little_endian)
    if vr == "AT":
        count = len(value) // 4
        order = "<" if little_endian else ">"
        pairs = struct.unpack(f"{order}{count * 2}H", value[: count * 4])
        tags_ = [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2)]
        return {"vr": vr, "Value": tags_} if tags_ else {"vr": vr}
    # strings: decode, then split (PS3.5 §6.1.2.5: a backslash is always a delimiter)
    text = _decode(value, encodings) if vr in _CHARSET_VRS else value.decode("latin-1")
    return _strings(vr, text)


def _decode(value: bytes, encodings: Sequence[str]) -> str:
    """``decode_bytes(value, encodings, TEXT_VR_DELIMS)``, with its common case done inline."""
    if b"\x1b" not in value:  # no ISO 2022 escape: decode_bytes would use the first encoding
        try:
            return value.decode(encodings[0])
        except (LookupError, UnicodeError):
            pass  # decode_bytes warns (or raises) and decides
    return decode_bytes(value, encodings, TEXT_VR_DELIMS)


def _strings(vr: str, text: str) -> JsonObject:
    if vr in _SPLIT_VRS and "\\" in text:
        parts = [p.rstrip("\x00 ") for p in text.split("\\")]
    else:
        parts = [text.rstrip("\x00 ")]
    if len(parts) == 1 and not parts[0]:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [_person_name(p) if p else None for p in parts]}
    if vr == "IS" or vr == "DS":
        return {"vr": vr, "Value": [_number_text(vr, p) if p else None for p in parts]}
    return {"vr": vr, "Value": [p or None for p in parts]}


def _person_name(text: str) -> dict[str, str]:
    groups = text.split("=")
    out: dict[str, str] = {}
    for name, group in zip(_PN_GROUPS, groups, strict=False):
        group = group.rstrip("^ ")
        if group:
            out[name] = group
    return out


def _number_text(vr: str, text: str) -> int | float | str:
    """IS/DS text as a JSON number, or the text itself if not a (losslessly) valid number."""
    s = text.strip(" ")
    if _IS_RE.fullmatch(s):
        number = int(s)
        return number if abs(number) <= _MAX_SAFE_INT else s
    if vr == "DS" and _DS_RE.fullmatch(s):
        real = float(s)
        if not math.isfinite(real):
            return s
        if len(s) > 16:
            # longer than a valid DS (16 bytes): keep the text if a double cannot hold it
            try:
                if Decimal(repr(real)) != Decimal(s):
                    return s
            except InvalidOperation:  # pragma: no cover - _DS_RE admits only valid decimals
                return s
        return real
    return s


def _numbers(vr: str, value: bytes, little_endian: bool) -> JsonObject:
    code, size = _NUMBER_FORMATS[vr]
    count = len(value) // size
    if count == 0:
        return {"vr": vr}
    order = "<" if little_endian else ">"
    numbers: list[Any]
    if vr == "FL":
        # shortest text that round-trips the float32 (0.1, not 0.10000000149011612)
        array = np.frombuffer(value, dtype=f"{order}f4", count=count)
        numbers = [float(str(x)) if math.isfinite(x) else _non_finite(float(x)) for x in array]
    else:
        numbers = list(struct.unpack(f"{order}{count}{code}", value[: count * size]))
        if vr == "FD":
            numbers = [x if math.isfinite(x) else _non_finite(x) for x in numbers]
        elif vr in ("SV", "UV"):
            numbers = [x if abs(x) <= _MAX_SAFE_INT else str(x) for x in numbers]
    return {"vr": vr, "Value": numbers}


def _non_finite(x: float) -> str:
    # JSON has no NaN/Infinity: emitted as strings (JSON-03, documented deviation)
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def inline_binary(value: bytes) -> str:
    """The ``InlineBinary`` text of a little-endian binary value (F.2.7).

    >>> inline_binary(b"\\x01\\x02")
    'AQI='
    """
    return base64.b64encode(value).decode("ascii")


def _inline(value: bytes, vr: str, little_endian: bool) -> str:
    word = _BINARY_WORD.get(vr, 1)
    if not little_endian and word > 1 and len(value) % word == 0:
        value = np.frombuffer(value, dtype=f">u{word}").astype(f"<u{word}").tobytes()
    return base64.b64encode(value).decode("ascii")


# --- elements pydicom has already converted (sequences, data sets built in memory) ---


def _typed(
    ds: Dataset,
    tag: int,
    elem: DataElement,
    prefix: str,
    encodings: Sequence[str],
    ctx: _Context,
) -> JsonObject:
    vr: str = elem.VR
    if " or " in vr:
        # resolved from the data set as pydicom would write it (PS3.5 Annex A notes)
        corrected = correct_ambiguous_vr_element(
            DataElement(tag, vr, elem.value), ds, ctx.little_endian
        )
        vr = corrected.VR or vr
        if " or " in vr:
            vr = vr.split(" or ")[0]
    value = elem.value
    if vr == "SQ":
        items = list(value or ())
        if not items:
            return {"vr": vr}
        out_items = []
        for index, item in enumerate(items):
            item_prefix = f"{prefix}/{tag:08X}/{index}"
            out_items.append(_dataset(item, item_prefix, _encodings_of(item, encodings), ctx))
        return {"vr": vr, "Value": out_items}
    if vr in BINARY_VRS or tag in ALWAYS_BULK_TAGS:
        data = _binary_bytes(value)
        if not data:
            return {"vr": vr}
        if tag in ALWAYS_BULK_TAGS or len(data) > ctx.inline_binary_max:
            return {"vr": vr, "BulkDataURI": f"{prefix}/{tag:08X}"}
        return {"vr": vr, "InlineBinary": _inline(data, vr, ctx.little_endian)}
    values = _as_list(value)
    if not values:
        return {"vr": vr}
    if isinstance(values[0], bytes | bytearray):
        # undecoded bytes (e.g. a value set as bytes): go through the raw path
        value_bytes = bytes(values[0])
        raw = RawDataElement(
            BaseTag(tag), vr, len(value_bytes), value_bytes, 0, False, ctx.little_endian
        )
        return _raw(Dataset(), tag, vr, raw, prefix, encodings, ctx)
    if vr == "AT":
        return {"vr": vr, "Value": [f"{int(v):08X}" for v in values]}
    if vr in _NUMBER_FORMATS:
        out: list[Any] = []
        for v in values:
            if v is None or v == "":
                out.append(None)
            elif vr in ("FL", "FD"):
                x = float(v)
                out.append(x if math.isfinite(x) else _non_finite(x))
            else:
                n = int(v)
                out.append(n if abs(n) <= _MAX_SAFE_INT or vr not in ("SV", "UV") else str(n))
        return {"vr": vr, "Value": out}
    if vr == "PN":
        texts = [_pn_text(v) for v in values]
    else:
        texts = ["" if v is None else str(v) for v in values]
    return _strings(vr, "\\".join(texts) if vr in _SPLIT_VRS else texts[0])


def _pn_text(value: object) -> str:
    if value is None:
        return ""
    components = getattr(value, "components", None)
    if components is not None:
        return "=".join(str(c) for c in components)
    return str(value)


def _as_list(value: object) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes | bytearray | PersonName):
        return [value]
    if isinstance(value, Iterable):
        return list(value)
    return [value]


def _binary_bytes(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, Iterable):  # a list of fragments or frames
        return b"".join(bytes(v) for v in value)
    return b""

"""Bulk data values of a stored instance, found by their BulkDataURI path (BULK-01/02, META-04).

A BulkDataURI made by :mod:`app.dicom.dicomjson` / :mod:`app.dicom.direct` ends in
``/bulkdata/{GGGGEEEE}`` for a top-level value and ``/bulkdata/{GGGGEEEE}/{item}/{GGGGEEEE}...``
for a nested one (sequence tag, 0-based item index, ..., value tag). :func:`parse_bulk_path` reads
that suffix; :func:`read_bulk_value` parses the PS3.10 file with pydicom (large values deferred, so
only the one asked for is read) and returns the value's bytes:

* little endian (PS3.18 §8.7.3.3, Table 8.7.3-4): values of a big-endian file are swapped word by
  word according to their VR;
* encapsulated Pixel Data (undefined length) is returned as pydicom holds it: the encapsulated
  byte stream, item tags and Basic Offset Table included. Frames without item tags are served by
  ``/frames`` (FRM-04); a client asking for the whole Pixel Data of a compressed image gets the
  stored value, which a PS3.10 reader can put back as it is.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from app.dicom.frames import swap_byte_order

__all__ = [
    "ENCAPSULATED_DOCUMENT",
    "BulkValue",
    "bulk_paths",
    "parse_bulk_path",
    "read_bulk_value",
    "read_bulk_values",
]

ENCAPSULATED_DOCUMENT = 0x00420011
MIME_TYPE_OF_ENCAPSULATED_DOCUMENT = 0x00420012

_PATH = re.compile(r"[0-9A-Fa-f]{8}(?:/(?:0|[1-9][0-9]{0,8})/[0-9A-Fa-f]{8})*")
#: values up to this size are read while parsing; longer ones only when asked for
_DEFER_SIZE = 64 * 1024
#: word size of the VRs whose values are swapped when the file is big endian
_WORD: dict[str, int] = {
    "OW": 2,
    "US": 2,
    "SS": 2,
    "AT": 2,
    "OF": 4,
    "OL": 4,
    "UL": 4,
    "SL": 4,
    "FL": 4,
    "OD": 8,
    "OV": 8,
    "FD": 8,
    "SV": 8,
    "UV": 8,
}
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")


@dataclass(frozen=True, slots=True)
class BulkValue:
    """The little-endian bytes of one value; ``media_type`` is the MIME Type of Encapsulated
    Document (0042,0012) for an Encapsulated Document (0042,0011), else None (BULK-02)."""

    data: bytes
    media_type: str | None = None


def parse_bulk_path(text: str) -> tuple[int, ...] | None:
    """``tag(/item/tag)*`` as (tag, item, tag, ...), or None when malformed.

    >>> [hex(n) if n > 9 else n for n in parse_bulk_path("00540016/0/00181072")]
    ['0x540016', 0, '0x181072']
    >>> parse_bulk_path("7FE00010/"), parse_bulk_path("7FE0001"), parse_bulk_path("0008/1/x")
    (None, None, None)
    """
    if not _PATH.fullmatch(text):
        return None
    return tuple(int(piece, 16 if i % 2 == 0 else 10) for i, piece in enumerate(text.split("/")))


def read_bulk_value(
    fileobj: BinaryIO, path: Sequence[int], *, deflated: bool = False
) -> BulkValue | None:
    """The value at ``path`` (see :func:`parse_bulk_path`) in the PS3.10 file ``fileobj``.

    None when the path leads nowhere: an unknown tag, an item index out of range, a tag on the
    way that is not a sequence, or a value that is not bytes on the wire (a sequence). ``fileobj``
    must stay open until this returns (deferred values are read from it); ``deflated`` turns
    deferring off, since the values of a deflated data set are not at offsets of the file.
    """
    return read_bulk_values(fileobj, [path], deflated=deflated)[0]


def read_bulk_values(
    fileobj: BinaryIO, paths: Sequence[Sequence[int]], *, deflated: bool = False
) -> list[BulkValue | None]:
    """The values at ``paths`` in the PS3.10 file ``fileobj``, parsed once (BULK-03).

    Each entry as :func:`read_bulk_value` returns it.
    """
    ds = dcmread(fileobj, force=True, defer_size=None if deflated else _DEFER_SIZE)
    return [_value_at(ds, path) for path in paths]


def bulk_paths(metadata_json: bytes) -> list[str]:
    """The bulk data paths (``tag(/item/tag)*``) of the BulkDataURIs in stored metadata JSON.

    Stored BulkDataURIs are relative (see :mod:`app.dicom.instance`); this reads them from the
    bytes, without parsing the JSON, in document order.

    >>> bulk_paths(b'{"7FE00010":{"vr":"OW","BulkDataURI":"/studies/1/series/2/instances/3'
    ...            b'/bulkdata/7FE00010"}}')
    ['7FE00010']
    """
    return [m.decode("ascii") for m in _STORED_URI.findall(metadata_json)]


_STORED_URI = re.compile(
    rb'"BulkDataURI":"/studies/[0-9.]+/series/[0-9.]+/instances/[0-9.]+'
    rb'/bulkdata/([0-9A-Fa-f]{8}(?:/[0-9]+/[0-9A-Fa-f]{8})*)"'
)


def _value_at(ds: Dataset, path: Sequence[int]) -> BulkValue | None:
    current: Dataset = ds
    for position in range(0, len(path) - 1, 2):
        tag, index = path[position], path[position + 1]
        if tag not in current:
            return None
        items = current[tag].value
        if not isinstance(items, DicomSequence) or index >= len(items):
            return None
        current = items[index]
    tag = path[-1]
    if tag not in current:
        return None
    element = current.get_item(tag)  # the value as encoded, deferred values read
    data, vr, little_endian = _encoded(element, ds.is_little_endian)
    if data is None:
        return None
    if not little_endian:
        data = swap_byte_order(data, _WORD.get(vr, 1))
    media_type = None
    if tag == ENCAPSULATED_DOCUMENT and MIME_TYPE_OF_ENCAPSULATED_DOCUMENT in current:
        declared = str(current[MIME_TYPE_OF_ENCAPSULATED_DOCUMENT].value or "").strip()
        media_type = declared.lower() if _MEDIA_TYPE.fullmatch(declared) else None
    return BulkValue(data, media_type)


def _encoded(
    element: RawDataElement | DataElement | None, dataset_little_endian: bool | None
) -> tuple[bytes | None, str, bool]:
    """(value bytes or None, VR, little endian) of an element as read from the file."""
    if isinstance(element, RawDataElement):
        vr = element.VR or dictionary_VR(element.tag)
        if vr == "SQ":
            return None, vr, True
        return bytes(element.value or b""), vr.split(" ")[0], element.is_little_endian
    if isinstance(element, DataElement) and isinstance(element.value, bytes | bytearray):
        return bytes(element.value), element.VR, dataset_little_endian is not False
    return None, "", True

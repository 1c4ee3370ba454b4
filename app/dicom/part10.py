"""Where the data set of a PS3.10 file starts, and what its File Meta says (PS3.10 §7.1).

A C-STORE carries the data set alone (PS3.7 §9.3.1.1), so an instance sent from its stored file
(C-GET, C-MOVE) goes without the preamble, ``DICM`` and the File Meta group, whose SOP class and
transfer syntax choose the presentation context. :func:`read_file_meta` reads them from the first
bytes of the file, walking group 0002 (always Explicit VR Little Endian) element by element, so
that it needs no group length and reads nothing past the group.
"""

import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["FileMeta", "NotPart10", "read_file_meta"]

#: VRs with a 4-byte length after two reserved bytes in Explicit VR (PS3.5 §7.1.2)
_LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_PREAMBLE: Final = 128
#: a File Meta group is a few hundred bytes; more means this is not one
_MAX_META: Final = 1 << 16


class NotPart10(ValueError):
    """The bytes do not begin as a PS3.10 file with a File Meta group."""


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What the File Meta group says, and where the data set starts."""

    sop_class_uid: str
    sop_uid: str
    transfer_syntax: str
    #: the offset of the data set's first byte in the file
    dataset_offset: int


def _uid(value: bytes) -> str:
    return value.rstrip(b"\0 ").decode("ascii", "replace")


def read_file_meta(head: bytes, *, whole: bool = False) -> FileMeta | None:
    """The File Meta of a PS3.10 file from its first bytes; None when ``head`` ends inside the
    group (read more), :class:`NotPart10` when it is not a PS3.10 file. ``whole`` says ``head``
    is the whole file (it may end with the group: an empty data set).

    >>> from app.dicom.filemeta import part10_header
    >>> head = part10_header("1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.840.10008.1.2")
    >>> data = head + bytes.fromhex("08001800 06000000") + b"1.2.3\\0"
    >>> meta = read_file_meta(data)
    >>> meta.sop_uid, meta.transfer_syntax, len(data) - meta.dataset_offset
    ('1.2.3', '1.2.840.10008.1.2', 14)
    >>> read_file_meta(data[:150]) is None, read_file_meta(head, whole=True).dataset_offset
    (True, 304)
    """
    if len(head) < _PREAMBLE + 4:
        if whole:
            raise NotPart10("shorter than a preamble")
        return None
    if head[_PREAMBLE : _PREAMBLE + 4] != b"DICM":
        raise NotPart10("no DICM prefix after the preamble")
    position = _PREAMBLE + 4
    values: dict[int, bytes] = {}
    while True:
        if position > _MAX_META:
            raise NotPart10("File Meta group too long")
        if len(head) < position + 8:
            if whole and len(head) == position:
                break
            if whole:
                raise NotPart10("the file ends inside its File Meta group")
            return None
        group, element = struct.unpack_from("<HH", head, position)
        if group != 0x0002:
            break
        vr = head[position + 4 : position + 6]
        if vr in _LONG_VRS:
            if len(head) < position + 12:
                return None
            (length,) = struct.unpack_from("<I", head, position + 8)
            start = position + 12
        else:
            (length,) = struct.unpack_from("<H", head, position + 6)
            start = position + 8
        if len(head) < start + length:
            if whole:
                raise NotPart10("the file ends inside its File Meta group")
            return None
        values[element] = head[start : start + length]
        position = start + length
    try:
        return FileMeta(_uid(values[0x0002]), _uid(values[0x0003]), _uid(values[0x0010]), position)
    except KeyError as exc:
        raise NotPart10(f"File Meta element (0002,{exc.args[0]:04X}) missing") from None

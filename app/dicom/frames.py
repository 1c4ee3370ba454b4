"""Where each frame's bytes are inside a stored PS3.10 file (PS3.5 §8.2, §A.4; FRM-03/04).

:func:`build_frame_index` computes, once at ingest, the byte ranges of every frame so that a
frame request (PS3.18 §10.4.1.1.4) is a ranged read of the stored object:

* native pixel data (PS3.5 §8.1.1): frame *n* starts at ``(n - 1) x Rows x Columns x
  SamplesPerPixel x BitsAllocated / 8`` bytes into the value; with BitsAllocated 1 the frames are
  bit-packed with no byte alignment, so a frame's range covers the bytes holding its bits and
  :attr:`~app.dicom.instance.FrameIndex.bit_offsets` gives the first pixel's bit; big-endian
  data records the word size to swap (:attr:`~app.dicom.instance.FrameIndex.swap_bytes`);
* encapsulated pixel data (PS3.5 §A.4): the fragment payloads (item headers excluded) are mapped
  to frames with the Extended Offset Table (7FE0,0001/0002), else the Basic Offset Table, else
  one fragment per frame when the counts match, else all fragments for a single frame, else by
  the JPEG / JPEG 2000 end-of-codestream marker (FFD9) closing each frame's last fragment.

Offsets are absolute offsets in the stored file.
"""

import math
import struct
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from app.dicom.instance import FrameIndex
from app.dicom.uids import ENCAPSULATED, EXPLICIT_VR_BIG_ENDIAN, NATIVE, VIDEO

__all__ = [
    "PixelDescription",
    "build_frame_index",
    "describe_pixels",
    "repack_bits",
    "swap_byte_order",
]

#: reads ``length`` bytes at absolute offset ``offset`` of the stored file (fewer at its end)
Reader = Callable[[int, int], bytes]

_PIXEL_DATA: Final = 0x7FE00010
_FLOAT_PIXEL_DATA: Final = 0x7FE00008
_DOUBLE_FLOAT_PIXEL_DATA: Final = 0x7FE00009
_EXTENDED_OFFSET_TABLE: Final = 0x7FE00001
_EXTENDED_OFFSET_TABLE_LENGTHS: Final = 0x7FE00002
_ITEM: Final = (0xFFFE, 0xE000)
_SEQUENCE_DELIMITER: Final = (0xFFFE, 0xE0DD)
_EOC_MARKER: Final = b"\xff\xd9"  # JPEG EOI / JPEG 2000 EOC / JPEG-LS EOI
_MAX_FRAMES: Final = 1 << 24


@dataclass(frozen=True, slots=True)
class PixelDescription:
    """The top-level pixel data element of an instance and the attributes that shape it."""

    tag: int
    vr: str | None
    value_offset: int  # absolute offset of the value in the stored file
    length: int  # value length; 0xFFFFFFFF when undefined (encapsulated)
    number_of_frames: int
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    photometric_interpretation: str = ""


def describe_pixels(ds: Dataset, start: int = 0) -> PixelDescription | None:
    """Find the pixel data element of ``ds`` (read with ``dcmread``; values may be deferred).

    ``start`` is the offset of the file's first byte in the stream ``ds`` was read from.
    Returns ``None`` when there is no pixel data or the image attributes are unusable.
    """
    for tag, bits in (
        (_PIXEL_DATA, None),
        (_FLOAT_PIXEL_DATA, 32),
        (_DOUBLE_FLOAT_PIXEL_DATA, 64),
    ):
        elem = ds.get_item(tag, keep_deferred=True)
        if elem is None:
            continue
        if not isinstance(elem, RawDataElement):
            return None  # built in memory: no file offsets
        rows, columns = _int(ds, 0x00280010), _int(ds, 0x00280011)
        allocated = bits if bits is not None else _int(ds, 0x00280100)
        if rows is None or columns is None or allocated is None:
            return None
        frames = _int(ds, 0x00280008)
        samples = _int(ds, 0x00280002)
        return PixelDescription(
            tag=tag,
            vr=elem.VR,
            value_offset=elem.value_tell - start,
            length=elem.length,
            number_of_frames=frames if frames is not None and frames > 0 else 1,
            rows=rows,
            columns=columns,
            samples_per_pixel=samples if samples is not None and samples > 0 else 1,
            bits_allocated=allocated,
            photometric_interpretation=_text(ds, 0x00280004),
        )
    return None


def build_frame_index(
    pixels: PixelDescription,
    transfer_syntax: str,
    read: Reader,
    *,
    extended_offsets: Sequence[int] | None = None,
    notes: list[str] | None = None,
) -> FrameIndex | None:
    """Map each frame of ``pixels`` to byte ranges of the stored file.

    ``read`` reads the stored file (needed for encapsulated data: item headers, offset table,
    fragment ends). ``extended_offsets`` is the Extended Offset Table (7FE0,0001) if present.
    Returns ``None`` (with a reason appended to ``notes``) when no reliable index exists.

    Examples
    --------
    >>> px = PixelDescription(0x7FE00010, "OW", 1000, 24, 3, 2, 2, 1, 16)
    >>> build_frame_index(px, "1.2.840.10008.1.2.1", lambda o, n: b"").ranges
    (((1000, 8),), ((1008, 8),), ((1016, 8),))
    """
    notes = notes if notes is not None else []
    if not 0 < pixels.number_of_frames <= _MAX_FRAMES:
        notes.append("frame index: implausible NumberOfFrames")
        return None
    if transfer_syntax in NATIVE:
        return _native(pixels, transfer_syntax, notes)
    if transfer_syntax in VIDEO:
        notes.append("frame index: video transfer syntax, frames are not separable")
        return None
    if transfer_syntax in ENCAPSULATED:
        return _encapsulated(pixels, read, extended_offsets, notes)
    notes.append("frame index: transfer syntax without byte-addressable frames")
    return None


def _native(pixels: PixelDescription, transfer_syntax: str, notes: list[str]) -> FrameIndex | None:
    if pixels.length == 0xFFFFFFFF:
        notes.append("frame index: native pixel data with undefined length")
        return None
    samples = pixels.samples_per_pixel
    if pixels.photometric_interpretation == "YBR_FULL_422":
        samples = 2  # PS3.3 §C.7.6.3.1.2: two CbCr samples per two pixels
    bits = pixels.rows * pixels.columns * samples * pixels.bits_allocated
    count = pixels.number_of_frames
    if bits <= 0 or math.ceil(bits * count / 8) > pixels.length:
        notes.append("frame index: pixel data shorter than its frames")
        return None
    base = pixels.value_offset
    swap = 0
    if transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
        if pixels.bits_allocated > 8:
            swap = pixels.bits_allocated // 8
        elif pixels.vr == "OW":
            swap = 2  # PS3.5 §A.3: OW values are big-endian 16-bit words, even for 8-bit pixels
    if bits % 8 == 0:
        size = bits // 8
        ranges = tuple(((base + n * size, size),) for n in range(count))
        return FrameIndex(encapsulated=False, ranges=ranges, swap_bytes=swap)
    # bit-packed (BitsAllocated 1): each frame covers the bytes holding its bits (PS3.5 §8.1.1)
    out: list[tuple[tuple[int, int], ...]] = []
    offsets: list[int] = []
    for n in range(count):
        first_bit = n * bits
        first_byte = first_bit // 8
        end_byte = (first_bit + bits + 7) // 8
        out.append(((base + first_byte, end_byte - first_byte),))
        offsets.append(first_bit % 8)
    return FrameIndex(
        encapsulated=False, ranges=tuple(out), bit_offsets=tuple(offsets), swap_bytes=swap
    )


def _encapsulated(
    pixels: PixelDescription,
    read: Reader,
    extended_offsets: Sequence[int] | None,
    notes: list[str],
) -> FrameIndex | None:
    items = _items(pixels.value_offset, read)
    if items is None or not items:
        notes.append("frame index: malformed encapsulated pixel data")
        return None
    (bot_position, bot_length), fragments = items[0], items[1:]
    if not fragments:
        notes.append("frame index: encapsulated pixel data without fragments")
        return None
    count = pixels.number_of_frames
    first = fragments[0][0]
    relative = [position - first for position, _ in fragments]
    payloads = [(position + 8, length) for position, length in fragments]

    groups: list[list[int]] | None = None
    if extended_offsets:
        groups = _by_offsets(extended_offsets, relative, count)
    if groups is None and bot_length >= 4 and bot_length % 4 == 0:
        table = read(bot_position + 8, bot_length)
        if len(table) == bot_length:
            groups = _by_offsets(struct.unpack(f"<{bot_length // 4}I", table), relative, count)
    if groups is None and len(fragments) == count:
        groups = [[i] for i in range(count)]
    if groups is None and count == 1:
        groups = [list(range(len(fragments)))]
    if groups is None:
        groups = _by_markers(payloads, read, count)
    if groups is None:
        notes.append("frame index: cannot map fragments to frames")
        return None
    ranges = tuple(tuple(payloads[i] for i in group) for group in groups)
    return FrameIndex(encapsulated=True, ranges=ranges)


def _items(position: int, read: Reader) -> list[tuple[int, int]] | None:
    """The (item tag position, length) of the BOT and every fragment (PS3.5 §A.4)."""
    out: list[tuple[int, int]] = []
    while True:
        header = read(position, 8)
        if len(header) < 8:
            return out if out else None  # truncated after the last complete item: keep them
        group, element, length = struct.unpack("<HHI", header)
        if (group, element) == _SEQUENCE_DELIMITER:
            return out
        if (group, element) != _ITEM or length == 0xFFFFFFFF:
            return None
        out.append((position, length))
        position += 8 + length


def _by_offsets(offsets: Sequence[int], relative: list[int], count: int) -> list[list[int]] | None:
    """Group fragments by frame start offsets (BOT / EOT, relative to the first fragment)."""
    if len(offsets) != count or offsets[0] != 0:
        return None
    index_of = {rel: i for i, rel in enumerate(relative)}
    starts: list[int] = []
    for offset in offsets:
        i = index_of.get(int(offset))
        if i is None or (starts and i <= starts[-1]):
            return None
        starts.append(i)
    ends = [*starts[1:], len(relative)]
    return [list(range(s, e)) for s, e in zip(starts, ends, strict=True)]


def _by_markers(
    payloads: list[tuple[int, int]], read: Reader, count: int
) -> list[list[int]] | None:
    """Close a frame at each fragment ending with an end-of-codestream marker (trailing pad ok)."""
    groups: list[list[int]] = []
    current: list[int] = []
    for i, (offset, length) in enumerate(payloads):
        current.append(i)
        tail = read(offset + max(0, length - 10), min(10, length))
        if _EOC_MARKER in tail:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups if len(groups) == count else None


def _int(ds: Dataset, tag: int) -> int | None:
    """An integer attribute (US or IS) of ``ds``, ``None`` when absent or unusable."""
    if tag not in ds:
        return None
    try:
        value: Any = ds[tag].value
        if isinstance(value, MutableSequence | tuple):  # a multi-valued IS: take the first
            value = value[0] if len(value) else None
        return None if value is None or value == "" else int(value)
    except (ValueError, TypeError, OverflowError, IndexError, KeyError):
        return None


def _text(ds: Dataset, tag: int) -> str:
    if tag not in ds:
        return ""
    try:
        return str(ds[tag].value).strip()
    except (ValueError, TypeError, KeyError):
        return ""


def repack_bits(data: bytes, bit_offset: int, bits: int) -> bytes:
    """The ``bits`` bits of a bit-packed frame starting at bit ``bit_offset`` of ``data``, moved to
    start at bit 0 (BitsAllocated 1, PS3.5 §8.1.1: pixel *i* is bit ``i % 8`` of byte ``i // 8``,
    least significant first). The last byte is zero-padded (FRM-03).

    >>> repack_bits(bytes([0b10110000, 0b00000101]), 4, 7).hex()
    '5b'
    """
    value = int.from_bytes(data, "little") >> bit_offset
    value &= (1 << bits) - 1
    return value.to_bytes((bits + 7) // 8, "little")


def swap_byte_order(data: bytes, width: int) -> bytes:
    """``data`` with each ``width``-byte word reversed (big to little endian, FRM-03).

    A trailing partial word is kept as it is.

    >>> swap_byte_order(bytes.fromhex("0102030405"), 2).hex()
    '0201040305'
    """
    if width <= 1:
        return data
    out = bytearray(data)
    whole = len(data) - len(data) % width
    for k in range(width):
        out[k:whole:width] = data[width - 1 - k : whole : width]
    return bytes(out)

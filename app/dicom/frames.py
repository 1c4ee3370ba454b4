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

The counts, lengths and offsets a file declares are checked against the bytes it holds before any
of them sizes anything (issue 19), and an instance whose counts disagree with its bytes is refused
at ingest with :class:`~app.errors.InvalidInstance` (0xC000) and the reason: NumberOfFrames that
is not a positive integer, Rows / Columns / BitsAllocated / SamplesPerPixel that cannot describe
pixels, native pixel data shorter than NumberOfFrames x Rows x Columns x SamplesPerPixel x
BitsAllocated / 8 (longer is kept with a note: PS3.5 §8.1.1 allows one pad byte, and files padded
further exist; the excess is never read), encapsulated pixel data whose
items run past its end or lack the sequence delimiter, fewer fragments than frames, an offset
table (basic or extended) whose entries are not one per frame at fragment starts, and RLE frames
whose header (PS3.5 §G.5) does not fit the frame or cannot decode to Rows x Columns. Instances
whose frames are consistent but cannot be mapped to byte ranges (no offset table, several
fragments per frame, no end markers; video) are stored without a frame index.
"""

import itertools
import math
import re
import struct
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from app.dicom.instance import FrameIndex
from app.dicom.uids import ENCAPSULATED, EXPLICIT_VR_BIG_ENDIAN, NATIVE, VIDEO
from app.errors import BadRequest, InvalidInstance

__all__ = [
    "PixelDescription",
    "build_frame_index",
    "check_frame_numbers",
    "check_image_attributes",
    "describe_pixels",
    "native_length",
    "parse_frame_numbers",
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
_UNDEFINED: Final = 0xFFFFFFFF
#: the most frames given a frame index (it holds byte ranges per frame: about 200 bytes each
#: while ingest builds it); beyond, frames are read from the whole file
_MAX_FRAMES: Final = 1 << 20
#: the most fragments an encapsulated value may have (each is listed while ingest reads them)
_MAX_FRAGMENTS: Final = 1 << 21
_RLE: Final = "1.2.840.10008.1.2.5"
_ENCAPSULATED_UNCOMPRESSED: Final = "1.2.840.10008.1.2.1.98"
_RLE_HEADER: Final = 64


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
    Returns ``None`` when there is no pixel data (or it was built in memory);
    :class:`~app.errors.InvalidInstance` when Rows, Columns or BitsAllocated are missing or
    NumberOfFrames / SamplesPerPixel are not integers.
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
            raise InvalidInstance("pixel data without Rows, Columns or BitsAllocated")
        frames = _count(ds, 0x00280008, "NumberOfFrames")
        samples = _count(ds, 0x00280002, "SamplesPerPixel")
        return PixelDescription(
            tag=tag,
            vr=elem.VR,
            value_offset=elem.value_tell - start,
            length=elem.length,
            number_of_frames=frames if frames is not None else 1,
            rows=rows,
            columns=columns,
            samples_per_pixel=samples if samples is not None else 1,
            bits_allocated=allocated,
            photometric_interpretation=_text(ds, 0x00280004),
        )
    return None


def check_image_attributes(pixels: PixelDescription) -> None:
    """Refuse Image Pixel attributes that cannot describe pixel data (PS3.3 §C.7.6.3, issue 19).

    >>> check_image_attributes(PixelDescription(0x7FE00010, "OW", 0, 8, -1, 2, 2, 1, 16))
    Traceback (most recent call last):
    ...
    app.errors.InvalidInstance: NumberOfFrames is -1: it must be a positive integer
    """
    if pixels.number_of_frames < 1:
        raise InvalidInstance(
            f"NumberOfFrames is {pixels.number_of_frames}: it must be a positive integer"
        )
    if pixels.rows < 1 or pixels.columns < 1:
        raise InvalidInstance("pixel data with Rows or Columns of 0")
    if not 1 <= pixels.samples_per_pixel <= 4:
        raise InvalidInstance(
            f"SamplesPerPixel is {pixels.samples_per_pixel}: it must be 1, 3 (or 4, retired)"
        )
    bits = pixels.bits_allocated
    if bits != 1 and not (bits % 8 == 0 and 8 <= bits <= 64):
        raise InvalidInstance(
            f"BitsAllocated is {bits}: it must be 1 or a multiple of 8 up to 64 (PS3.5 §8.1.1)"
        )


def build_frame_index(
    pixels: PixelDescription,
    transfer_syntax: str,
    read: Reader,
    *,
    extended_offsets: Sequence[int] | None = None,
    extended_lengths: Sequence[int] | None = None,
    notes: list[str] | None = None,
) -> FrameIndex | None:
    """Map each frame of ``pixels`` to byte ranges of the stored file.

    ``read`` reads the stored file (needed for encapsulated data: item headers, offset table,
    fragment ends). ``extended_offsets`` / ``extended_lengths`` are the Extended Offset Table
    (7FE0,0001) and its lengths (7FE0,0002) if present. Returns ``None`` (with a reason appended
    to ``notes``) when the frames are consistent but no reliable index exists;
    :class:`~app.errors.InvalidInstance` when the counts disagree with the bytes (module
    docstring).

    Examples
    --------
    >>> px = PixelDescription(0x7FE00010, "OW", 1000, 24, 3, 2, 2, 1, 16)
    >>> build_frame_index(px, "1.2.840.10008.1.2.1", lambda o, n: b"").ranges
    (((1000, 8),), ((1008, 8),), ((1016, 8),))
    >>> build_frame_index(PixelDescription(0x7FE00010, "OW", 0, 22, 3, 2, 2, 1, 16),
    ...                   "1.2.840.10008.1.2.1", lambda o, n: b"")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    app.errors.InvalidInstance: Pixel Data holds 22 bytes, fewer than the 24 that ...
    """
    notes = notes if notes is not None else []
    check_image_attributes(pixels)
    if transfer_syntax in NATIVE:
        return _native(pixels, transfer_syntax, notes)
    if transfer_syntax in ENCAPSULATED:
        return _encapsulated(
            pixels, transfer_syntax, read, extended_offsets, extended_lengths, notes
        )
    notes.append("frame index: transfer syntax without byte-addressable frames")
    return None


def native_length(pixels: PixelDescription) -> int:
    """The bytes native pixel data of ``pixels`` takes (PS3.5 §8.1.1; bit-packed when
    BitsAllocated is 1), without the trailing pad byte.

    >>> native_length(PixelDescription(0x7FE00010, "OB", 0, 0, 3, 3, 3, 1, 1))
    4
    """
    return math.ceil(_frame_bits(pixels) * pixels.number_of_frames / 8)


def _frame_bits(pixels: PixelDescription) -> int:
    samples = pixels.samples_per_pixel
    if pixels.photometric_interpretation == "YBR_FULL_422":
        samples = 2  # PS3.3 §C.7.6.3.1.2: two CbCr samples per two pixels
    return pixels.rows * pixels.columns * samples * pixels.bits_allocated


def _native(pixels: PixelDescription, transfer_syntax: str, notes: list[str]) -> FrameIndex | None:
    if pixels.length == _UNDEFINED:
        raise InvalidInstance("native pixel data of undefined length")
    bits = _frame_bits(pixels)
    count = pixels.number_of_frames
    expected = native_length(pixels)
    if pixels.length < expected:
        raise InvalidInstance(
            f"Pixel Data holds {pixels.length} bytes, fewer than the {expected} that "
            "NumberOfFrames x Rows x Columns x SamplesPerPixel x BitsAllocated / 8 give"
        )
    if pixels.length > expected + 1:
        # PS3.5 §8.1.1 allows one pad byte; files with more exist (pydicom's MR_small_padded):
        # the excess is never read (frames are sized from the attributes), so they are kept
        notes.append(f"pixel data: {pixels.length - expected} bytes beyond the frames, ignored")
    if count > _MAX_FRAMES:
        notes.append(f"frame index: more than {_MAX_FRAMES} frames are not indexed")
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
    transfer_syntax: str,
    read: Reader,
    extended_offsets: Sequence[int] | None,
    extended_lengths: Sequence[int] | None,
    notes: list[str],
) -> FrameIndex | None:
    end = None if pixels.length == _UNDEFINED else pixels.value_offset + pixels.length
    (bot_position, bot_length), *fragments = _items(pixels.value_offset, end, read)
    if not fragments:
        raise InvalidInstance("encapsulated pixel data without fragments")
    count = pixels.number_of_frames
    first = fragments[0][0]
    relative = [position - first for position, _ in fragments]
    payloads = [(position + 8, length) for position, length in fragments]
    span = fragments[-1][0] + 8 + fragments[-1][1] - first  # of the fragment items
    if transfer_syntax in VIDEO:
        if count > sum(length for _, length in fragments):
            raise InvalidInstance(f"NumberOfFrames ({count}) exceeds the bytes of the video stream")
        notes.append("frame index: video transfer syntax, frames are not separable")
        return None
    if count > len(fragments):
        raise InvalidInstance(
            f"NumberOfFrames ({count}) exceeds the {len(fragments)} fragments of the pixel data "
            "(each frame takes one fragment at least, PS3.5 §A.4)"
        )

    groups: list[list[int]] | None = None
    if extended_offsets:
        groups = _table_groups(extended_offsets, relative, count, span, "Extended Offset Table")
        _check_lengths(extended_offsets, extended_lengths, count, span)
    if bot_length:
        if bot_length % 4:
            raise InvalidInstance("the Basic Offset Table's length is not a multiple of 4")
        if bot_length // 4 != count:  # before reading it: its length comes from the file
            raise InvalidInstance(
                f"the Basic Offset Table has {bot_length // 4} entries for {count} frames"
            )
        table = read(bot_position + 8, bot_length)
        offsets = struct.unpack(f"<{bot_length // 4}I", table)
        bot_groups = _table_groups(offsets, relative, count, span, "Basic Offset Table")
        groups = groups or bot_groups
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
    if transfer_syntax == _RLE:
        for frame in ranges:
            _check_rle(pixels, frame, read)
    elif transfer_syntax == _ENCAPSULATED_UNCOMPRESSED:
        size = math.ceil(_frame_bits(pixels) / 8)
        if any(not size <= sum(n for _, n in frame) <= size + 1 for frame in ranges):
            raise InvalidInstance(
                f"an encapsulated uncompressed frame does not hold the {size} bytes of a frame"
            )
    if count > _MAX_FRAMES:
        notes.append(f"frame index: more than {_MAX_FRAMES} frames are not indexed")
        return None
    return FrameIndex(encapsulated=True, ranges=ranges)


def _table_groups(
    offsets: Sequence[int], relative: list[int], count: int, span: int, name: str
) -> list[list[int]]:
    """Fragments grouped by an offset table's frame starts, or InvalidInstance (issue 19)."""
    if len(offsets) != count:
        raise InvalidInstance(f"the {name} has {len(offsets)} entries for {count} frames")
    if any(not 0 <= offset < span for offset in offsets):
        raise InvalidInstance(f"an offset of the {name} lies beyond the pixel data")
    groups = _by_offsets(offsets, relative, count)
    if groups is None:
        raise InvalidInstance(f"the {name}'s offsets do not point at fragments in increasing order")
    return groups


def _check_lengths(
    offsets: Sequence[int], lengths: Sequence[int] | None, count: int, span: int
) -> None:
    if lengths is None:
        return
    if len(lengths) != count:
        raise InvalidInstance(
            f"the Extended Offset Table Lengths has {len(lengths)} entries for {count} frames"
        )
    if any(o + n > span for o, n in zip(offsets, lengths, strict=True)):
        raise InvalidInstance("a length of the Extended Offset Table Lengths lies beyond the data")


def _check_rle(pixels: PixelDescription, frame: tuple[tuple[int, int], ...], read: Reader) -> None:
    """The RLE header of a frame (PS3.5 §G.5) against the frame's bytes and Rows x Columns.

    Each segment holds one byte of every sample (§G.2) and decodes to Rows x Columns bytes;
    PackBits turns 2 bytes into 128 at most, so a shorter segment cannot hold its pixels.
    """
    (offset, length), *_ = frame
    total = sum(n for _, n in frame)
    header = read(offset, _RLE_HEADER) if length >= _RLE_HEADER else b""
    if len(header) < _RLE_HEADER:
        raise InvalidInstance("an RLE frame is shorter than its 64-byte header")
    segments, *starts = struct.unpack("<16I", header)
    expected = pixels.samples_per_pixel * max(1, pixels.bits_allocated // 8)
    if segments != expected:
        raise InvalidInstance(
            f"an RLE frame has {segments} segments where SamplesPerPixel and BitsAllocated "
            f"need {expected} (PS3.5 §G.2)"
        )
    bounds = [*starts[:segments], total]
    least = 2 * math.ceil(pixels.rows * pixels.columns / 128)
    for begin, stop in itertools.pairwise(bounds):
        if not _RLE_HEADER <= begin <= stop <= total:
            raise InvalidInstance("an RLE segment offset lies outside its frame")
        if stop - begin < least:
            raise InvalidInstance(
                "an RLE segment is too short to decode to Rows x Columns pixels "
                f"({stop - begin} bytes; {least} at least)"
            )


def _items(position: int, end: int | None, read: Reader) -> list[tuple[int, int]]:
    """The (item tag position, length) of the BOT and every fragment (PS3.5 §A.4), up to the
    sequence delimiter (or ``end``, the end of a defined-length value); InvalidInstance when an
    item runs past the bytes present or something else than an item is found."""
    out: list[tuple[int, int]] = []
    while end is None or position < end:
        header = read(position, 8)
        if len(header) < 8:
            raise InvalidInstance(
                "encapsulated pixel data runs past the end of the file (an item length beyond "
                "its bytes, or no sequence delimiter)"
            )
        group, element, length = struct.unpack("<HHI", header)
        if (group, element) == _SEQUENCE_DELIMITER:
            break
        if (group, element) != _ITEM or length == _UNDEFINED:
            raise InvalidInstance("encapsulated pixel data holds something other than items")
        if len(out) > _MAX_FRAGMENTS:
            raise InvalidInstance(f"encapsulated pixel data with more than {_MAX_FRAGMENTS} items")
        out.append((position, length))
        position += 8 + length
    if end is not None and position > end:
        raise InvalidInstance("an item of the encapsulated pixel data runs past its value")
    if not out:
        raise InvalidInstance("encapsulated pixel data without a Basic Offset Table item")
    return out


def _by_offsets(offsets: Sequence[int], relative: list[int], count: int) -> list[list[int]] | None:
    """Group fragments by frame start offsets (BOT / EOT, relative to the first fragment)."""
    if len(offsets) != count or not offsets or offsets[0] != 0:
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


def _count(ds: Dataset, tag: int, keyword: str) -> int | None:
    """A count (IS / US) of ``ds``: None when absent or empty, InvalidInstance when not an
    integer (a value that cannot be trusted must not be taken as 1)."""
    if tag not in ds:
        return None
    try:
        value: Any = ds[tag].value
        if isinstance(value, MutableSequence | tuple):
            value = value[0] if len(value) else None
        if value is None or value == "":
            return None
        number = float(value)
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    except (ValueError, TypeError, OverflowError, KeyError) as exc:
        raise InvalidInstance(f"{keyword} is not an integer") from exc


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


# --- frame lists of WADO-RS URLs (PS3.18 §10.4.1.1.4, FRM-01) ---

_FRAME_LIST = re.compile(r"[0-9]+(?:,[0-9]+)*")


def parse_frame_numbers(text: str) -> list[int]:
    """The frame numbers of a ``{frames}`` path segment (FRM-01), or :class:`BadRequest`.

    >>> parse_frame_numbers("3,1,2")
    [3, 1, 2]
    >>> parse_frame_numbers("1,1")
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: invalid frame list: frame 1 is listed twice
    """
    if not _FRAME_LIST.fullmatch(text) or len(text) > 10_000:
        raise BadRequest("invalid frame list: expected positive integers separated by commas")
    pieces = [piece.lstrip("0") or "0" for piece in text.split(",")]
    if any(len(piece) > 10 for piece in pieces):  # int() refuses more than 4300 digits
        raise BadRequest("invalid frame list: a frame number has more than 10 digits (IS)")
    numbers = [int(piece) for piece in pieces]
    check_frame_numbers(numbers)
    return numbers


def check_frame_numbers(numbers: Sequence[int]) -> None:
    """FRM-01: at least one frame, each a positive number listed once (:class:`BadRequest`).

    >>> check_frame_numbers([2, 0])
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: invalid frame list: frame numbers start at 1
    """
    if not numbers:
        raise BadRequest("invalid frame list: no frame number")
    seen: set[int] = set()
    for n in numbers:
        if n < 1:
            raise BadRequest("invalid frame list: frame numbers start at 1")
        if n in seen:
            raise BadRequest(f"invalid frame list: frame {n} is listed twice")
        seen.add(n)

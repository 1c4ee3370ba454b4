"""What decoding pixel data will allocate, known and bounded before any decoder runs (issue 19).

A compressed frame of a few hundred bytes can declare 40000 x 40000 pixels of 16 bits, and the
codecs allocate what is declared: 3.2 GB, and where that allocation fails a native codec may abort
the whole process (pylibjpeg-rle does). So every route that decodes checks first, from the same
values the codec will use:

* :class:`PixelShape`: Rows x Columns x SamplesPerPixel x BitsAllocated x NumberOfFrames, from a
  data set (:meth:`PixelShape.of_dataset`) or from the values the index keeps;
* :func:`codestream_shape`: what a JPEG (SOF), JPEG-LS (SOF55) or JPEG 2000 / HTJ2K (SIZ)
  codestream declares, which is what those codecs size their buffers from, whatever the DICOM
  header says (RLE and native data are sized from the DICOM header);
* :class:`DecodeLimits`: the configured bounds; its ``check_*`` methods raise
  :class:`~app.errors.DecodedSizeTooLarge` (413) with the reason.

Sizes are those of the decoded arrays (pydicom's: a sample takes 1, 2, 4 or 8 bytes, BitsAllocated
1 unpacked to a byte). The codecs' working buffers are a small multiple of that (openjpeg keeps 4
bytes a sample), and rendering takes about 13 bytes a pixel, hence its own bound on pixels.
"""

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments

from app.errors import DecodedSizeTooLarge

__all__ = [
    "DEFAULT_LIMITS",
    "DecodeLimits",
    "PixelShape",
    "codestream_shape",
    "sample_bytes",
]

_PIXEL_KEYWORDS: Final = (
    ("PixelData", None),
    ("FloatPixelData", 32),
    ("DoubleFloatPixelData", 64),
)
#: JPEG start-of-frame markers (ISO/IEC 10918-1 Table B.1) and JPEG-LS SOF55 (ISO/IEC 14495-1)
_SOF: Final = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC)}) | frozenset(
    {*range(0xCD, 0xD0), 0xF7}
)
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})
_SOI: Final = b"\xff\xd8"
_SOC_SIZ: Final = b"\xff\x4f\xff\x51"  # JPEG 2000 codestream start and image size marker
_JP2_SIGNATURE: Final = b"\x00\x00\x00\x0cjP  \r\n\x87\n"  # ISO/IEC 15444-1 §I.5.1
#: how far into a fragment a codestream header is looked for (JP2 boxes, APPn segments)
_HEADER_SCAN: Final = 1 << 20
_SIZ: Final = struct.Struct(">HHIIIIIIIIH")
#: a JPEG whose SOF gives no height has it in a later DNL marker: assume the most it can say
_DNL_ROWS: Final = 0xFFFF


def sample_bytes(bits_allocated: int) -> int:
    """The bytes a decoded sample takes in pydicom's arrays.

    >>> [sample_bytes(b) for b in (1, 8, 12, 16, 24, 32, 64)]
    [1, 1, 2, 2, 4, 4, 8]
    """
    for size in (1, 2, 4):
        if bits_allocated <= 8 * size:
            return size
    return 8


@dataclass(frozen=True, slots=True)
class PixelShape:
    """The attributes that size decoded pixel data (PS3.3 §C.7.6.3)."""

    rows: int
    columns: int
    samples_per_pixel: int = 1
    bits_allocated: int = 8
    number_of_frames: int = 1

    @property
    def pixels(self) -> int:
        """Pixels of one frame."""
        return self.rows * self.columns

    @property
    def frame_bytes(self) -> int:
        """Bytes of one decoded frame.

        >>> PixelShape(40000, 40000, 1, 16).frame_bytes
        3200000000
        """
        return self.pixels * self.samples_per_pixel * sample_bytes(self.bits_allocated)

    @property
    def total_bytes(self) -> int:
        """Bytes of every frame decoded."""
        return self.frame_bytes * self.number_of_frames

    def describe(self) -> str:
        """The shape in words, for error messages (no PHI: only image attributes)."""
        frames = f" x {self.number_of_frames} frames" if self.number_of_frames > 1 else ""
        return (
            f"{self.rows} x {self.columns} pixels x {self.samples_per_pixel} sample(s) x "
            f"{self.bits_allocated} bits{frames}"
        )

    @classmethod
    def of_dataset(cls, ds: Dataset) -> "PixelShape | None":
        """The shape of ``ds``'s pixel data; None without pixel data or usable attributes.

        Counts that are not positive integers are taken as 1: the bound must not fail where the
        codec would (it refuses them itself).

        >>> ds = Dataset(); ds.Rows, ds.Columns, ds.BitsAllocated = 4, 5, 16
        >>> ds.NumberOfFrames, ds.PixelData = "-1", b""
        >>> PixelShape.of_dataset(ds)
        PixelShape(rows=4, columns=5, samples_per_pixel=1, bits_allocated=16, number_of_frames=1)
        """
        found = [bits for keyword, bits in _PIXEL_KEYWORDS if keyword in ds]
        if not found:
            return None
        bits = found[0]
        rows, columns = _positive(ds, "Rows"), _positive(ds, "Columns")
        allocated = bits or _positive(ds, "BitsAllocated")
        if rows is None or columns is None or allocated is None:
            return None
        return cls(
            rows,
            columns,
            _positive(ds, "SamplesPerPixel") or 1,
            allocated,
            _positive(ds, "NumberOfFrames") or 1,
        )


def _positive(ds: Dataset, keyword: str) -> int | None:
    try:
        value: Any = ds.get(keyword)
        if isinstance(value, list | tuple) or (
            hasattr(value, "__len__") and not isinstance(value, str | bytes)
        ):
            value = value[0] if len(value) else None
        number = int(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return number if number is not None and number > 0 else None


def codestream_shape(data: bytes) -> PixelShape | None:
    """What the JPEG, JPEG-LS or JPEG 2000 codestream starting ``data`` declares; None when
    ``data`` does not start one (RLE, deflate, a fragment after a frame's first).

    >>> sof = b"\\xff\\xd8\\xff\\xc0\\x00\\x0b\\x08\\x9c\\x40\\x9c\\x40\\x01\\x01\\x11\\x00"
    >>> codestream_shape(sof)
    PixelShape(rows=40000, columns=40000, samples_per_pixel=1, bits_allocated=8, number_of_frames=1)
    """
    if data[:2] == _SOI:
        return _jpeg(data)
    if data[:4] == _SOC_SIZ:
        return _jpeg2000(data, len(_SOC_SIZ))
    if data[:12] == _JP2_SIGNATURE:  # a JP2 file: the codestream is in its jp2c box
        at = data.find(_SOC_SIZ, 12, _HEADER_SCAN)
        return _jpeg2000(data, at + len(_SOC_SIZ)) if at >= 0 else None
    return None


def _jpeg(data: bytes) -> PixelShape | None:
    pos = 2
    end = min(len(data), _HEADER_SCAN)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None  # not a marker: malformed, the codec refuses it
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in _SOF:
            if pos + 10 > len(data):
                return None
            precision, rows, columns, components = struct.unpack_from(">BHHB", data, pos + 4)
            return PixelShape(rows or _DNL_ROWS, columns, components, 8 if precision <= 8 else 16)
        if marker in (0xDA, 0xD9):  # scan or end before any frame header
            return None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _jpeg2000(data: bytes, pos: int) -> PixelShape | None:
    if pos + _SIZ.size > len(data):
        return None
    _, _, xsiz, ysiz, xosiz, yosiz, *_tiles, components = _SIZ.unpack_from(data, pos)
    depths = data[pos + _SIZ.size : pos + _SIZ.size + 3 * components : 3]
    bits = max(((d & 0x7F) + 1 for d in depths), default=8)
    return PixelShape(max(0, ysiz - yosiz), max(0, xsiz - xosiz), components, bits)


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """The bounds decoding must stay within (``limits.max_decoded_*`` settings)."""

    #: one decoded frame
    frame_bytes: int = 512 << 20
    #: the frames decoded at once (a whole instance transcoded, frames of a deflated data set)
    instance_bytes: int = 1 << 30
    #: one rendered frame (rendering takes about 13 bytes a pixel)
    render_pixels: int = 64 << 20

    def check_frame(self, shape: PixelShape, what: str = "a decoded frame") -> None:
        """:class:`DecodedSizeTooLarge` when one frame of ``shape`` exceeds the frame bound.

        >>> DecodeLimits().check_frame(PixelShape(40000, 40000, 1, 16))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        app.errors.DecodedSizeTooLarge: a decoded frame would take 3200000000 bytes (40000 x ...
        """
        if shape.frame_bytes > self.frame_bytes:
            raise DecodedSizeTooLarge(
                f"{what} would take {shape.frame_bytes} bytes ({shape.describe()}), more than "
                f"the {self.frame_bytes} allowed (limits.max_decoded_frame_bytes)"
            )

    def check_frames(self, shape: PixelShape, count: int) -> None:
        """``count`` frames of ``shape`` decoded at once: each, and together."""
        self.check_frame(shape)
        total = shape.frame_bytes * count
        if total > self.instance_bytes:
            raise DecodedSizeTooLarge(
                f"decoding {count} frame(s) at once would take {total} bytes "
                f"({shape.describe()}), more than the {self.instance_bytes} allowed "
                "(limits.max_decoded_instance_bytes)"
            )

    def check_instance(self, shape: PixelShape) -> None:
        """Every frame of ``shape`` decoded at once (a whole instance)."""
        self.check_frames(shape, shape.number_of_frames)

    def check_render(self, shape: PixelShape) -> None:
        """A frame of ``shape`` rendered: decoded, then windowed and scaled."""
        self.check_frame(shape)
        if shape.pixels > self.render_pixels:
            raise DecodedSizeTooLarge(
                f"rendering a frame of {shape.rows} x {shape.columns} pixels is refused: more "
                f"than the {self.render_pixels} pixels allowed (limits.max_rendered_pixels)"
            )

    def check_codestream(self, data: bytes) -> None:
        """The codestream starting ``data`` (one frame) within the frame bound."""
        shape = codestream_shape(data)
        if shape is not None:
            self.check_frame(shape, "the codestream of a frame declares a size that")

    def check_fragments(self, pixel_data: bytes) -> None:
        """Every codestream starting a fragment of encapsulated ``pixel_data`` (PS3.5 §A.4)
        within the frame bound (a frame's later fragments start none, and are passed over)."""
        for fragment in _fragments(pixel_data):
            self.check_codestream(fragment)


#: the settings' defaults (the pure functions' default argument)
DEFAULT_LIMITS: Final = DecodeLimits()


def _fragments(pixel_data: bytes) -> Iterable[bytes]:
    fragments = generate_fragments(pixel_data)
    try:
        next(fragments, None)  # the Basic Offset Table item
        yield from fragments
    except ValueError:
        return  # malformed items: the codec refuses them, having allocated nothing for them

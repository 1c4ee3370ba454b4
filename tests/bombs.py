"""Crafted decoded-size bombs (issue 19): small files whose pixel data decodes to far more.

Each is a valid-looking PS3.10 file built with pydicom on the small CT image of
:mod:`tests.factories`: its counts agree with its bytes (ingest stores it), but decoding it would
allocate what its Image Pixel attributes or its codestream header declare.
"""

import io
import struct

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from tests.factories import make_dataset, to_bytes

#: the side of the images the codestream bombs declare: 40000 x 40000 = 1.6 Gpixels
HUGE = 40000


def _encapsulated(ds: Dataset, syntax: str, frames: list[bytes]) -> bytes:
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    return to_bytes(ds)


def _image(rows: int, columns: int, bits: int = 16, frames: int = 1) -> Dataset:
    """The CT image with these attributes (its native pixel data replaced by the caller)."""
    ds = make_dataset()
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


def rle_zeros(pixels: int) -> bytes:
    """One RLE segment (PS3.5 §G.3.1) of ``pixels`` zero bytes: a replicate run of 128 per two
    bytes, the densest RLE can be (so the most it can decode to)."""
    whole, rest = divmod(pixels, 128)
    tail = b"" if not rest else bytes([257 - rest, 0]) if rest > 1 else b"\x00\x00"
    return b"\x81\x00" * whole + tail


def rle_frame(rows: int, columns: int, segments: int) -> bytes:
    """An RLE frame of ``segments`` segments of zeros (header, PS3.5 §G.5, then segments)."""
    segment = rle_zeros(rows * columns)
    offsets = [64 + n * len(segment) for n in range(segments)]
    header = struct.pack("<16I", segments, *offsets, *([0] * (15 - segments)))
    return header + segment * segments


def rle_bomb(rows: int, columns: int) -> bytes:
    """RLE Lossless 16-bit image of zeros: 64 times smaller than decoded, and consistent."""
    return _encapsulated(_image(rows, columns), RLELossless, [rle_frame(rows, columns, 2)])


def rle_header_bomb(rows: int = HUGE, columns: int = HUGE) -> bytes:
    """The 0.8 kB RLE instance of issue 19: a one-segment frame of 8 bytes under a header that
    claims ``rows`` x ``columns`` x 16 bits (ingest refuses it: the frame cannot hold them)."""
    frame = struct.pack("<16I", 1, 64, *([0] * 14)) + b"\x81\x00" * 4
    return _encapsulated(_image(rows, columns), RLELossless, [frame])


def jpeg_frame(rows: int, columns: int) -> bytes:
    """A baseline JPEG of 16 x 16 gray pixels whose frame header (SOF0) says rows x columns."""
    out = io.BytesIO()
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(out, format="JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, rows, columns)
    return bytes(data)


def jpeg_bomb(*, header: bool) -> bytes:
    """JPEG baseline, 8 bits: ``header=True`` declares the huge size in the DICOM header and the
    codestream alike; ``False`` only in the codestream (Rows and Columns say 16)."""
    side = HUGE if header else 16
    return _encapsulated(_image(side, side, 8), JPEGBaseline8Bit, [jpeg_frame(HUGE, HUGE)])


def _encoded(syntax: str) -> tuple[Dataset, bytearray]:
    """A 64 x 64 x 8-bit image compressed in ``syntax`` by pydicom's encoders, and its frame."""
    ds = _image(64, 64, 8)
    pixels = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    ds.compress(syntax, pixels, generate_instance_uid=False)
    return ds, bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))


def j2k_bomb() -> bytes:
    """JPEG 2000 Lossless, Rows x Columns 64, its SIZ marker declaring 40000 x 40000."""
    ds, frame = _encoded(JPEG2000Lossless)
    # SIZ (ISO/IEC 15444-1 §A.5.1) after SOC: Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz
    struct.pack_into(">II", frame, 8, HUGE, HUGE)
    struct.pack_into(">II", frame, 24, HUGE, HUGE)
    return _encapsulated(ds, JPEG2000Lossless, [bytes(frame)])


def jpegls_bomb() -> bytes:
    """JPEG-LS Lossless, Rows x Columns 64, its SOF55 marker declaring 40000 x 40000."""
    ds, frame = _encoded(JPEGLSLossless)
    sof = frame.index(b"\xff\xf7")
    struct.pack_into(">HH", frame, sof + 5, HUGE, HUGE)
    return _encapsulated(ds, JPEGLSLossless, [bytes(frame)])


def deflate_bomb(side: int, frames: int) -> bytes:
    """Deflated Explicit VR Little Endian (PS3.5 §A.5): ``frames`` frames of side x side x 16
    bits of zeros, about a thousand times smaller than inflated."""
    ds = _image(side, side, 16, frames)
    ds.PixelData = bytes(side * side * 2 * frames)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return to_bytes(ds)


def native_image(side: int) -> bytes:
    """Explicit VR Little Endian, side x side x 8 bits: as large stored as decoded."""
    ds = _image(side, side, 8)
    ds.PixelData = bytes(side * side)
    return to_bytes(ds)

"""Decoded-size bounds (issue 19, class 1): every decoding function refuses before its codec runs.

The bombs of :mod:`tests.bombs` would have the codecs allocate gigabytes; here they are refused
in microseconds, with a reason naming the size and the limit. The limits are small so the
consistent (and so not tiny) bombs stay small too.
"""

import io
import struct
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import generate_frames

from app.dicom.decoding import DecodeLimits, PixelShape, codestream_shape
from app.dicom.render import PNG, RenderParams, render
from app.dicom.transcode import PixelModule, decode_frame, decode_frames, transcode
from app.errors import DecodedSizeTooLarge
from tests import bombs
from tests.factories import make_instance

SMALL = DecodeLimits(frame_bytes=1 << 20, instance_bytes=4 << 20, render_pixels=1 << 19)


def _first_frame(raw: bytes) -> bytes:
    ds = dcmread(io.BytesIO(raw))
    return next(generate_frames(ds.PixelData, number_of_frames=1))


def test_shape_sizes() -> None:
    shape = PixelShape(512, 256, 3, 8, 10)
    assert (shape.pixels, shape.frame_bytes, shape.total_bytes) == (131072, 393216, 3932160)
    assert PixelShape(10, 10, 1, 1).frame_bytes == 100  # bit-packed pixels decode to bytes
    assert PixelShape(10, 10, 1, 12).frame_bytes == 200


def test_shape_of_dataset_takes_counts_that_are_no_counts_as_one() -> None:
    ds = dcmread(io.BytesIO(make_instance(rows=4, columns=6)))
    assert PixelShape.of_dataset(ds) == PixelShape(4, 6, 1, 16, 1)
    ds.NumberOfFrames = 0
    assert PixelShape.of_dataset(ds) == PixelShape(4, 6, 1, 16, 1)
    del ds.PixelData
    assert PixelShape.of_dataset(ds) is None


def test_codestream_shapes_of_real_encoders() -> None:
    out = io.BytesIO()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(out, format="JPEG")
    assert codestream_shape(out.getvalue()) == PixelShape(30, 40, 3, 8)
    assert codestream_shape(_first_frame(bombs.j2k_bomb())) == PixelShape(
        bombs.HUGE, bombs.HUGE, 1, 8
    )
    assert codestream_shape(_first_frame(bombs.jpegls_bomb())) == PixelShape(
        bombs.HUGE, bombs.HUGE, 1, 8
    )
    assert codestream_shape(bombs.jpeg_frame(300, 200)) == PixelShape(300, 200, 1, 8)
    assert codestream_shape(bombs.rle_frame(4, 4, 1)) is None  # sized by the DICOM header


def test_jpeg_height_in_a_dnl_marker_counts_as_the_largest() -> None:
    frame = bytearray(bombs.jpeg_frame(16, 16))
    struct.pack_into(">H", frame, frame.index(b"\xff\xc0") + 5, 0)
    shape = codestream_shape(bytes(frame))
    assert shape is not None
    assert shape.rows == 0xFFFF


def test_limits_name_the_size_and_the_setting() -> None:
    with pytest.raises(DecodedSizeTooLarge, match=r"3200000000 bytes .*max_decoded_frame_bytes"):
        DecodeLimits().check_frame(PixelShape(bombs.HUGE, bombs.HUGE, 1, 16))
    with pytest.raises(DecodedSizeTooLarge, match="max_decoded_instance_bytes"):
        SMALL.check_instance(PixelShape(512, 512, 1, 16, 20))  # 512 KiB a frame, 10 MiB
    with pytest.raises(DecodedSizeTooLarge, match="max_rendered_pixels"):
        SMALL.check_render(PixelShape(1024, 1024, 1, 8))  # 1 MiB, but 1 Mpixel
    SMALL.check_frames(PixelShape(512, 512, 1, 16), 8)  # 4 MiB: at the limit, allowed
    assert DecodedSizeTooLarge.http_status == 413


@pytest.mark.parametrize(
    "make",
    [
        lambda: bombs.jpeg_bomb(header=True),
        lambda: bombs.jpeg_bomb(header=False),
        bombs.j2k_bomb,
        bombs.jpegls_bomb,
    ],
    ids=["jpeg-header", "jpeg-codestream", "jpeg2000-codestream", "jpegls-codestream"],
)
def test_decode_frame_refuses_before_the_codec(make: Callable[[], bytes]) -> None:
    raw = make()
    ds = dcmread(io.BytesIO(raw))
    pixels = PixelModule(ds.Rows, ds.Columns, 1, 8, 8, 0, "MONOCHROME2")
    syntax = str(ds.file_meta.TransferSyntaxUID)
    with pytest.raises(DecodedSizeTooLarge, match="1600000000 bytes"):
        decode_frame(_first_frame(raw), syntax, pixels)
    with pytest.raises(DecodedSizeTooLarge):
        transcode(raw)
    with pytest.raises(DecodedSizeTooLarge):
        decode_frames(raw, [1])
    with pytest.raises(DecodedSizeTooLarge):
        render(raw, RenderParams(PNG))


def test_rle_is_sized_from_its_header() -> None:
    raw = bombs.rle_bomb(1024, 1024)  # 2 MiB decoded, 33 kB stored
    ds = dcmread(io.BytesIO(raw))
    pixels = PixelModule(1024, 1024, 1, 16, 16, 0, "MONOCHROME2")
    with pytest.raises(DecodedSizeTooLarge, match="2097152 bytes"):
        decode_frame(_first_frame(raw), str(ds.file_meta.TransferSyntaxUID), pixels, SMALL)
    with pytest.raises(DecodedSizeTooLarge):
        transcode(raw, limits=SMALL)
    with pytest.raises(DecodedSizeTooLarge):
        render(raw, RenderParams(PNG), decode=SMALL)
    assert len(transcode(raw)) > 2 << 20  # within the default limits it decodes


def test_deflated_frames_decoded_together_are_bounded() -> None:
    raw = bombs.deflate_bomb(512, 12)  # 512 KiB a frame, 6 MiB in all, 7 kB stored
    assert len(raw) < 16 << 10
    assert len(decode_frames(raw, [1, 2], SMALL)) == 2
    with pytest.raises(DecodedSizeTooLarge, match="12 frame"):
        decode_frames(raw, list(range(1, 13)), SMALL)
    with pytest.raises(DecodedSizeTooLarge):
        transcode(raw, limits=SMALL)


def test_native_render_is_bounded_by_pixels() -> None:
    raw = bombs.native_image(800)  # 640 kpixels
    with pytest.raises(DecodedSizeTooLarge, match="800 x 800 pixels"):
        render(raw, RenderParams(PNG), decode=SMALL)
    assert render(raw, RenderParams(PNG)).startswith(b"\x89PNG")

"""Trusted header counts (issue 19, class 2): ingest checks every count against the bytes present.

Each file here declares counts, lengths or offsets its bytes do not hold; ``parse_instance``
refuses it with :class:`~app.errors.InvalidInstance` (STOW FailureReason 0xC000) and a reason,
on the direct reader and on pydicom's alike (Big Endian and deflated files take the latter).
"""

import struct
from typing import Any

import pytest
from pydicom.encaps import encapsulate, encapsulate_extended
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)

from app.dicom.parse import parse_instance
from app.dicom.status import Status
from app.errors import InvalidInstance
from tests import bombs
from tests.factories import make_dataset, to_bytes

SYNTAXES = [ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]


def _native(syntax: str = ExplicitVRLittleEndian, **overrides: Any) -> bytes:
    """A 2 x 2 x 16-bit image (8 bytes a frame) with ``overrides``."""
    return to_bytes(make_dataset(syntax, rows=2, columns=2, **overrides))


def _refused(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidInstance, match=reason) as caught:
        parse_instance(raw)
    assert caught.value.dimse_status == Status.CANNOT_UNDERSTAND


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ("-1", "NumberOfFrames is -1"),
        ("0", "NumberOfFrames is 0"),
        ("1000000000", "fewer than the 8000000000"),
        ("2.5", "NumberOfFrames is not an integer"),
    ],
)
def test_number_of_frames_must_be_a_positive_count_of_the_frames_present(
    syntax: str, frames: str, reason: str
) -> None:
    _refused(_native(syntax, NumberOfFrames=frames), reason)


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_native_pixel_data_must_hold_its_frames(syntax: str) -> None:
    _refused(_native(syntax, NumberOfFrames=2), "Pixel Data holds 8 bytes, fewer than the 16")
    _refused(_native(syntax, SamplesPerPixel=3), "fewer than the 24")
    parsed = parse_instance(_native(syntax, NumberOfFrames=2, PixelData=bytes(16)))
    assert parsed.instance.number_of_frames == 2


def test_longer_native_pixel_data_is_kept_with_a_note() -> None:
    parsed = parse_instance(_native(PixelData=bytes(8 + 64)))  # as pydicom's MR_small_padded
    assert parsed.frames is not None
    assert parsed.frames.ranges[0][0][1] == 8
    assert any("64 bytes beyond the frames" in note for note in parsed.notes)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"Rows": 0}, "Rows or Columns of 0"),
        ({"Columns": None}, "without Rows, Columns or BitsAllocated"),
        ({"BitsAllocated": 12}, "BitsAllocated is 12"),
        ({"BitsAllocated": 128}, "BitsAllocated is 128"),
        ({"SamplesPerPixel": 0}, "SamplesPerPixel is 0"),
        ({"SamplesPerPixel": 7}, "SamplesPerPixel is 7"),
    ],
)
def test_image_attributes_must_describe_pixels(overrides: dict[str, Any], reason: str) -> None:
    _refused(_native(**overrides), reason)


def _encapsulated(frames: list[bytes], syntax: str = JPEGBaseline8Bit, **overrides: Any) -> Any:
    ds = make_dataset(syntax, **overrides)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    return ds


def test_frames_must_not_outnumber_fragments() -> None:
    ds = _encapsulated([b"\xff\xd8ab\xff\xd9"], NumberOfFrames="1000000000")
    _refused(to_bytes(ds), "NumberOfFrames \\(1000000000\\) exceeds the 1 fragments")


def test_fragment_items_must_stay_inside_the_value() -> None:
    ds = _encapsulated([b"ab", b"cd"], NumberOfFrames=2)
    value = bytearray(ds.PixelData)
    struct.pack_into("<I", value, len(value) - 8 - 10 + 4, 0x7FFFFFF0)  # the last fragment's
    ds.PixelData = bytes(value)
    _refused(to_bytes(ds), "runs past the end of the file")


def test_something_else_than_items_is_refused() -> None:
    ds = _encapsulated([b"ab"])
    value = bytearray(ds.PixelData)
    value[12:16] = b"\x08\x00\x10\x00"  # the fragment's item tag (after a 4-byte BOT)
    ds.PixelData = bytes(value)
    _refused(to_bytes(ds), "something other than items")


def test_basic_offset_table_must_have_one_entry_per_frame_at_fragment_starts() -> None:
    frames = [b"\xff\xd8ab\xff\xd9", b"\xff\xd8cd\xff\xd9"]
    good = _encapsulated(frames, NumberOfFrames=2)
    assert parse_instance(to_bytes(good)).frames is not None
    three = _encapsulated(frames, NumberOfFrames=2)
    three.PixelData = b"\xfe\xff\x00\xe0\x0c\x00\x00\x00" + bytes(12) + three.PixelData[16:]
    _refused(to_bytes(three), "Basic Offset Table has 3 entries for 2 frames")
    beyond = _encapsulated(frames, NumberOfFrames=2)
    value = bytearray(beyond.PixelData)
    struct.pack_into("<I", value, 12, 1 << 30)  # the second frame's offset
    beyond.PixelData = bytes(value)
    _refused(to_bytes(beyond), "offset of the Basic Offset Table lies beyond")
    between = _encapsulated(frames, NumberOfFrames=2)
    value = bytearray(between.PixelData)
    struct.pack_into("<I", value, 12, 2)  # inside the first fragment
    between.PixelData = bytes(value)
    _refused(to_bytes(between), "do not point at fragments")


def test_extended_offset_table_must_have_one_entry_per_frame() -> None:
    ds = make_dataset(JPEGBaseline8Bit, NumberOfFrames=2)
    pixel_data, offsets, lengths = encapsulate_extended([b"ab", b"cd"])
    ds.PixelData, ds.ExtendedOffsetTableLengths = pixel_data, lengths
    ds["PixelData"].VR = "OB"
    ds.ExtendedOffsetTable = offsets + struct.pack("<Q", 4)
    _refused(to_bytes(ds), "Extended Offset Table has 3 entries for 2 frames")
    ds.ExtendedOffsetTable = offsets
    ds.ExtendedOffsetTableLengths = struct.pack("<QQ", 2, 1 << 40)
    _refused(to_bytes(ds), "Extended Offset Table Lengths lies beyond")


def test_the_issues_rle_header_bomb_is_refused() -> None:
    raw = bombs.rle_header_bomb()
    assert len(raw) < 1100  # 40000 x 40000 x 16 bits declared: 3.2 GB decoded
    _refused(raw, "1 segments where SamplesPerPixel and BitsAllocated need 2")


def test_rle_segments_must_fit_their_frame_and_their_pixels() -> None:
    good = bombs.rle_frame(64, 64, 2)
    ds = make_dataset(RLELossless, Rows=64, Columns=64, PixelData=encapsulate([good]))
    ds["PixelData"].VR = "OB"
    assert parse_instance(to_bytes(ds)).frames is not None
    # the right number of segments, too short for 40000 x 40000 pixels
    short = struct.pack("<16I", 2, 64, 72, *([0] * 13)) + b"\x81\x00" * 8
    ds = make_dataset(RLELossless, Rows=40000, Columns=40000, PixelData=encapsulate([short]))
    ds["PixelData"].VR = "OB"
    _refused(to_bytes(ds), "too short to decode to Rows x Columns")
    outside = struct.pack("<16I", 2, 64, 1 << 20, *([0] * 13)) + good[64:]
    ds = make_dataset(RLELossless, Rows=64, Columns=64, PixelData=encapsulate([outside]))
    ds["PixelData"].VR = "OB"
    _refused(to_bytes(ds), "segment offset lies outside its frame")


def test_consistent_bombs_are_stored() -> None:
    """Decoded-size bombs with consistent counts are valid DICOM: stored, refused at decoding."""
    for raw in (bombs.jpeg_bomb(header=True), bombs.j2k_bomb(), bombs.rle_bomb(512, 512)):
        assert parse_instance(raw).frames is not None
    assert parse_instance(bombs.deflate_bomb(256, 3)).instance.number_of_frames == 3

"""Frame index (FRM-03/04): the indexed byte ranges equal pydicom's own frame extraction."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.pixels.utils import pack_bits
from pydicom.uid import ExplicitVRBigEndian, JPEGBaseline8Bit

from app.dicom.frames import PixelDescription, build_frame_index
from app.dicom.instance import FrameIndex
from app.dicom.parse import parse_instance
from app.errors import InstanceRejected
from tests.corpus import corpus, corpus_path
from tests.factories import make_dataset, to_bytes


def _frame(data: bytes, index: FrameIndex, n: int) -> bytes:
    return b"".join(data[o : o + length] for o, length in index.ranges[n])


def _parsed(path: str | Path) -> tuple[bytes, FrameIndex | None]:
    data = Path(path).read_bytes()
    try:
        return data, parse_instance(data).frames
    except InstanceRejected:
        return data, None


ALL = [str(f) for f in corpus() if f.suffix == ".dcm"]


@pytest.mark.parametrize("path", ALL, ids=lambda p: Path(p).name)
def test_corpus_frames_match_pydicom(path: str) -> None:
    data, frames = _parsed(path)
    if frames is None:
        return
    ds = pydicom.dcmread(path)
    count = int(ds.get("NumberOfFrames") or 1)
    assert len(frames.ranges) == count
    assert frames.to_json() == FrameIndex.from_json(frames.to_json()).to_json()
    if frames.encapsulated:
        expected = list(generate_frames(ds.PixelData, number_of_frames=count))
        assert [_frame(data, frames, n) for n in range(count)] == expected
    elif frames.bit_offsets is None:
        size = len(_frame(data, frames, 0))
        for n in range(count):
            assert _frame(data, frames, n) == ds.PixelData[n * size : (n + 1) * size]


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_rle_2frame.dcm",
        "emri_small.dcm",
        "emri_small_RLE.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
        "color3d_jpeg_baseline.dcm",
        "SC_rgb_2frame.dcm",
        "SC_rgb_expb_2frame.dcm",
    ],
)
def test_multi_frame_files_are_indexed(name: str) -> None:
    path = corpus_path(name)
    _, frames = _parsed(path)
    assert frames is not None
    assert len(frames.ranges) == int(pydicom.dcmread(path).NumberOfFrames) > 1


@pytest.mark.parametrize(
    "name",
    ["emri_small_big_endian.dcm", "SC_rgb_expb_16bit_2frame.dcm", "SC_rgb_expb_32bit_2frame.dcm"],
)
def test_big_endian_swapped_frames_equal_pixel_array(name: str) -> None:
    path = corpus_path(name)
    data, frames = _parsed(path)
    assert frames is not None
    assert frames.swap_bytes in (2, 4)
    ds = pydicom.dcmread(path)
    array = ds.pixel_array
    if int(ds.get("NumberOfFrames") or 1) == 1:
        array = array[np.newaxis]
    word = f"u{frames.swap_bytes}"
    for n in range(len(frames.ranges)):
        little = np.frombuffer(_frame(data, frames, n), dtype=">" + word).astype("<" + word)
        assert little.tobytes() == np.ascontiguousarray(array[n]).astype("<" + word).tobytes()


def test_one_bit_frames() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 2, size=(3, 3, 3), dtype=np.uint8)  # 3 frames of 9 bits
    ds = make_dataset(
        Rows=3,
        Columns=3,
        BitsAllocated=1,
        BitsStored=1,
        HighBit=0,
        NumberOfFrames=3,
        PixelData=pack_bits(pixels),
    )
    data = to_bytes(ds)
    frames = parse_instance(data).frames
    assert frames is not None
    assert frames.bit_offsets == (0, 1, 2)
    assert [r[0][1] for r in frames.ranges] == [2, 2, 2]
    for n in range(3):
        raw = np.frombuffer(_frame(data, frames, n), dtype=np.uint8)
        bits = np.unpackbits(raw, bitorder="little")[frames.bit_offsets[n] :][:9]
        assert bits.tolist() == pixels[n].ravel().tolist()


def _encapsulated(
    fragments_per_frame: int, *, bot: bool, eot: bool = False
) -> tuple[bytes, list[bytes]]:
    frames = [bytes([n + 1]) * (10 + 2 * n) for n in range(3)]  # even: no item padding
    # a syntax whose frame content ingest does not read (RLE frames must have an RLE header)
    ds = make_dataset(JPEGBaseline8Bit, NumberOfFrames=3, Rows=2, Columns=2)
    if eot:
        ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(
            frames
        )
    else:
        ds.PixelData = encapsulate(frames, fragments_per_frame=fragments_per_frame, has_bot=bot)
    ds["PixelData"].VR = "OB"
    return to_bytes(ds), frames


@pytest.mark.parametrize(
    ("fragments", "bot", "eot"),
    [(1, True, False), (1, False, False), (2, True, False), (1, False, True)],
    ids=["bot", "no-bot-one-per-frame", "bot-two-per-frame", "eot"],
)
def test_encapsulated_mapping(fragments: int, bot: bool, eot: bool) -> None:
    data, expected = _encapsulated(fragments, bot=bot, eot=eot)
    frames = parse_instance(data).frames
    assert frames is not None
    assert frames.encapsulated
    assert [_frame(data, frames, n) for n in range(3)] == expected
    assert all(len(r) == fragments for r in frames.ranges)


def test_encapsulated_by_markers() -> None:
    # three frames of two fragments each, no offset table: grouped by the FFD9 end marker
    frames = [b"\xff\xd8" + bytes([n]) * 6 + b"\xff\xd9" for n in range(3)]
    ds = make_dataset("1.2.840.10008.1.2.4.50", NumberOfFrames=3)
    ds.PixelData = encapsulate(frames, fragments_per_frame=2, has_bot=False)
    ds["PixelData"].VR = "OB"
    data = to_bytes(ds)
    index = parse_instance(data).frames
    assert index is not None
    assert [_frame(data, index, n) for n in range(3)] == frames


def test_unmappable_fragments_give_no_index() -> None:
    # two frames in three fragments, no offset table, no end markers: consistent counts, but
    # which fragment starts the second frame is unknown
    notes: list[str] = []
    px = PixelDescription(0x7FE00010, "OB", 0, 0xFFFFFFFF, 2, 2, 2, 1, 8)
    stream = (
        b"\xfe\xff\x00\xe0\x00\x00\x00\x00"  # empty BOT
        + b"\xfe\xff\x00\xe0\x02\x00\x00\x00ab"
        + b"\xfe\xff\x00\xe0\x02\x00\x00\x00cd"
        + b"\xfe\xff\x00\xe0\x02\x00\x00\x00ef"
        + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    index = build_frame_index(
        px, "1.2.840.10008.1.2.4.50", lambda o, n: stream[o : o + n], notes=notes
    )
    assert index is None
    assert notes


def test_video_has_no_frame_index() -> None:
    notes: list[str] = []
    px = PixelDescription(0x7FE00010, "OB", 0, 0xFFFFFFFF, 30, 2, 2, 3, 8)
    stream = (
        b"\xfe\xff\x00\xe0\x00\x00\x00\x00"  # empty BOT
        + b"\xfe\xff\x00\xe0\x40\x00\x00\x00"
        + bytes(64)  # one stream for the 30 frames
        + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    read = lambda o, n: stream[o : o + n]  # noqa: E731
    assert build_frame_index(px, "1.2.840.10008.1.2.4.102", read, notes=notes) is None
    assert notes


def test_big_endian_eight_bit_ow() -> None:
    ds = make_dataset(ExplicitVRBigEndian, BitsAllocated=8, BitsStored=8, HighBit=7)
    ds["PixelData"].VR = "OW"
    frames = parse_instance(to_bytes(ds)).frames
    assert frames is not None
    assert frames.swap_bytes == 2

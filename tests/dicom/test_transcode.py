"""Pure transcoding rules and functions (app.dicom.transcode; NEG-07/08/09, WADO-04, FRM-05)."""

import io
from pathlib import Path

import numpy as np
import orjson
import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames

from app.dicom.parse import parse_instance
from app.dicom.transcode import (
    IMPLEMENTATION_CLASS_UID,
    PixelModule,
    TranscodeError,
    decode_frame,
    decode_frames,
    output_syntax,
    transcode,
)
from tests.corpus import corpus_path

EVRLE = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
BIG = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
RLE = "1.2.840.10008.1.2.5"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
MPEG4 = "1.2.840.10008.1.2.4.102"
JPEG_XL_LOSSLESS = "1.2.840.10008.1.2.4.110"


@pytest.mark.parametrize(
    ("stored", "requested", "expected"),
    [
        (EVRLE, None, EVRLE),
        (EVRLE, "*", EVRLE),
        (EVRLE, EVRLE, EVRLE),
        (EVRLE, JPEG_BASELINE, None),  # we do not encode (NEG-09)
        (IMPLICIT, "*", EVRLE),  # NEG-08
        (IMPLICIT, None, EVRLE),
        (IMPLICIT, IMPLICIT, None),  # never emitted, even when named
        (BIG, "*", EVRLE),
        (BIG, BIG, None),
        (RLE, None, EVRLE),  # NEG-07: decoded by default
        (RLE, "*", RLE),
        (RLE, RLE, RLE),
        (J2K_LOSSLESS, None, EVRLE),
        (JPEG_BASELINE, None, JPEG_BASELINE),  # lossy only: as stored (NEG-07)
        (JPEG_BASELINE, EVRLE, EVRLE),  # unless EVRLE is named
        (MPEG4, None, MPEG4),
        (MPEG4, EVRLE, None),  # video cannot be decoded
        (JPEG_XL_LOSSLESS, None, None),  # no decoder here
        (JPEG_XL_LOSSLESS, "*", JPEG_XL_LOSSLESS),
        ("1.2.840.10008.1.2.1.99", None, EVRLE),  # deflate
    ],
)
def test_output_syntax(stored: str, requested: str | None, expected: str | None) -> None:
    assert output_syntax(stored, requested) == expected


def test_output_syntax_exceptions() -> None:
    # NEG-07: decoded pixel data that would not fit Explicit VR Little Endian stays compressed
    assert output_syntax(RLE, None, native_pixel_bytes=5 << 30) == RLE
    assert output_syntax(RLE, None, native_pixel_bytes=1 << 20) == EVRLE
    # no pixel data: any encapsulated syntax can be rewritten, even one without a decoder
    assert output_syntax(JPEG_XL_LOSSLESS, None, has_pixels=False) == EVRLE
    assert output_syntax(JPEG_BASELINE, None, has_pixels=False) == EVRLE


def _raw(name: str) -> bytes:
    return Path(corpus_path(name)).read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_bigendian.dcm",
        "rtdose_expb.dcm",  # 32-bit big-endian pixels
        "SC_rgb_expb_16bit_2frame.dcm",
        "image_dfl.dcm",  # deflated data set
        "CT_small.dcm",
        "SC_rgb_rle_2frame.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline YBR: RGB after decoding
        "SC_rgb_jpeg.dcm",  # declares explicit VR, holds implicit VR elements
    ],
)
def test_transcode_keeps_pixels_and_regenerates_file_meta(name: str) -> None:
    raw = _raw(name)
    original = dcmread(io.BytesIO(raw))
    out = dcmread(io.BytesIO(transcode(raw)))
    assert out.preamble == bytes(128)
    meta = out.file_meta
    assert meta.TransferSyntaxUID == EVRLE
    assert meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == original.SOPClassUID
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert out.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(out.pixel_array, original.pixel_array)


def test_transcode_refuses_what_it_cannot_produce() -> None:
    with pytest.raises(TranscodeError, match="cannot encode"):
        transcode(_raw("CT_small.dcm"), JPEG_BASELINE)
    with pytest.raises(TranscodeError, match="could not be decoded"):
        transcode(_raw("JPEG-lossy.dcm"))  # 12-bit JPEG extended: no decoder here can read it


def test_decode_frame_equals_pydicom() -> None:
    raw = _raw("emri_small_jpeg_2k_lossless.dcm")
    ds = dcmread(io.BytesIO(raw))
    pixels = PixelModule.from_dicom_json(orjson.loads(parse_instance(raw).metadata_json))
    assert pixels is not None
    assert (pixels.rows, pixels.columns, pixels.bits_allocated) == (64, 64, 16)
    frames = list(generate_frames(ds.PixelData, number_of_frames=10))
    assert decode_frame(frames[4], J2K_LOSSLESS, pixels) == ds.pixel_array[4].tobytes()
    with pytest.raises(TranscodeError):
        decode_frame(b"not a codestream", J2K_LOSSLESS, pixels)
    with pytest.raises(TranscodeError):
        decode_frame(frames[0], MPEG4, pixels)


def test_decode_frames_of_a_whole_file() -> None:
    raw = _raw("image_dfl.dcm")
    pixels = dcmread(io.BytesIO(raw)).pixel_array
    assert decode_frames(raw, [1]) == [pixels.tobytes()]
    with pytest.raises(TranscodeError):
        decode_frames(b"garbage", [1])

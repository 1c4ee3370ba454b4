"""The CPU work of rendering and of WADO-URI's ``application/dicom``, run in decoder processes.

Each function here takes bytes and returns bytes, and is defined at module level so the decoder
pool (:mod:`app.services.decoders`) can run it in a worker process for compressed pixel data: a
codec crash then fails one request, not the server. WADO-URI (URI-04) produces Explicit VR Little
Endian through WADO-RS's transcoder (:mod:`app.dicom.transcode`), Implicit VR Little Endian by
re-encoding here, and ``anonymize=yes`` through the PS3.15 Basic Profile with Clean Pixel Data
(:mod:`app.dicom.anonymize`).
"""

import io
from dataclasses import replace

import numpy as np
from pydicom import Dataset, dcmwrite
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from app.dicom import render as rendering
from app.dicom.anonymize import anonymize
from app.dicom.decoding import DEFAULT_LIMITS, DecodeLimits
from app.dicom.render import OutputLimits, RenderParams
from app.dicom.transcode import TranscodeError, check_decodable, transcode
from app.errors import NotAcceptable

__all__ = ["NATIVE_SYNTAXES", "anonymize_instance", "render_frame", "to_transfer_syntax"]

#: the syntaxes WADO-URI can produce by decoding and re-encoding (no transcoder here yet)
NATIVE_SYNTAXES = frozenset({str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)})


def _decode_all(ds: Dataset) -> np.ndarray:
    return np.asarray(pixel_array(ds))


def render_frame(
    header: bytes,
    frame: bytes,
    params: RenderParams,
    limits: OutputLimits,
    decode: DecodeLimits = DEFAULT_LIMITS,
) -> bytes:
    """Render one frame from its header and frame bytes (as
    :meth:`~.service.RenderService._read_frame` reads them)."""
    ds = rendering.single_frame_dataset(header, frame, params.frames[0])
    return rendering.render(b"", replace(params, frames=(1,)), ds, limits, decode)


def to_transfer_syntax(raw: bytes, target: str, limits: DecodeLimits = DEFAULT_LIMITS) -> bytes:
    """``raw`` re-encoded in ``target`` (a native syntax): pixel data decoded if compressed.

    Explicit VR Little Endian goes through WADO-RS's transcoder (:mod:`app.dicom.transcode`,
    File Meta regenerated); only an explicitly requested Implicit VR Little Endian is written here.
    """
    if target == str(ExplicitVRLittleEndian):
        try:
            return transcode(raw, target, limits)
        except TranscodeError as exc:
            raise NotAcceptable(f"cannot convert to {target}: {exc}") from None
    ds = rendering.read_dataset(raw)
    return _write(ds, target, limits)


def _write(ds: Dataset, target: str, limits: DecodeLimits = DEFAULT_LIMITS) -> bytes:
    stored = UID(ds.file_meta.TransferSyntaxUID)
    if stored.is_compressed and "PixelData" in ds:
        check_decodable(ds, limits)
        ds.decompress()  # native pixels, Explicit VR Little Endian
    big_endian = not stored.is_compressed and not stored.is_little_endian
    if big_endian:
        # only the pixel data is swapped here: other OB/OW values would need it too
        words = [e.keyword for e in ds.iterall() if e.VR in ("OW", "OF", "OD", "OL", "OV")]
        if any(keyword != "PixelData" for keyword in words):
            raise NotAcceptable(
                "a big endian object with binary values other than its pixel data cannot be "
                "re-encoded yet"
            )
        if "PixelData" in ds:
            pixels = np.asarray(pixel_array(ds, raw=True))  # no colour conversion
            ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
            if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
                ds.PlanarConfiguration = 0  # the array is colour-by-pixel
    ds.file_meta.TransferSyntaxUID = UID(target)
    out = io.BytesIO()
    implicit = target == str(ImplicitVRLittleEndian)
    dcmwrite(
        out,
        ds,
        enforce_file_format=not big_endian,  # pydicom: not together with force_encoding
        implicit_vr=implicit,
        little_endian=True,
        force_encoding=big_endian,
    )
    return out.getvalue()


def anonymize_instance(
    raw: bytes, salt: bytes, target: str, stored: str, limits: DecodeLimits = DEFAULT_LIMITS
) -> bytes:
    ds = rendering.read_dataset(raw)
    if UID(stored).is_compressed and "PixelData" in ds:
        check_decodable(ds, limits)  # burned-in text is cleaned from decoded pixels
    ds, cleaned = anonymize(ds, salt, _decode_all)
    if cleaned:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # pixels are native now
    elif target == stored:
        out_syntax = UID(stored)
        if out_syntax.is_compressed or str(out_syntax) not in NATIVE_SYNTAXES:
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            return out.getvalue()
    return _write(ds, target, limits)

"""Transcoding for WADO-RS and C-GET/C-MOVE: stored encodings to Explicit (or, for a DIMSE peer,
Implicit) VR Little Endian, frames to native pixels.

PS3.18 §8.7.3 (NEG-06..09, WADO-02/04, FRM-05), PS3.4 §C.4.2.3.1 (DIMSE-12). Pure functions,
CPU-bound: the retrieve service runs them in worker threads with bounded concurrency.

* :func:`output_syntax` decides, from the stored transfer syntax and the one a client asked for,
  which syntax an instance goes out in, or that it cannot be produced (NEG-07/08/09);
  :func:`context_syntax` decides it for a DIMSE peer from the syntaxes of the presentation
  contexts it accepted for the instance's SOP class (DIMSE-12);
* :func:`transcode` rewrites a PS3.10 file in Explicit VR Little Endian (or Implicit VR Little
  Endian, for a DIMSE peer that accepts nothing else): compressed pixel data is
  decoded (JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K, RLE: pydicom with the
  pylibjpeg / pyjpegls plugins), deflated data sets are inflated, Implicit VR and Big Endian data
  sets re-encoded; the File Meta group is regenerated with a zero preamble (WADO-04);
* :func:`decode_frame` decodes one encapsulated frame to native little-endian pixels
  (FRM-05), and :func:`decode_frames` decodes frames of a whole file (for instances whose frames
  are not byte ranges of the stored file: deflated data sets, unmappable fragments).

Decoded pixels are what pydicom's ``pixel_array`` returns: colour samples interleaved
(PlanarConfiguration 0), YCbCr JPEG data converted to RGB (the transcoded data set says so in
PhotometricInterpretation; a decoded frame is labelled only by its transfer syntax, so a client
reading the stored metadata should expect RGB for a decoded YBR frame, as with Orthanc and
dcm4chee), BitsAllocated 1 bit-packed.

Decoding is bounded (issue 19): before a codec runs, the decoded size the Image Pixel attributes
and the codestream headers declare is checked against :class:`~app.dicom.decoding.DecodeLimits`
(:class:`~app.errors.DecodedSizeTooLarge` beyond).

Default syntax (NEG-07): Explicit VR Little Endian, except for syntaxes that may hold lossy pixel
data (:data:`LOSSY`): what is held is the lossy stream, so it is sent as stored unless the client
names Explicit VR Little Endian; and pixel data too large for Explicit VR Little Endian (a value
length fits in 32 bits) stays in its stored (compressed) syntax.
"""

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import pack_bits, pixel_array
from pydicom.uid import UID

from app.dicom.decoding import DEFAULT_LIMITS, DecodeLimits, PixelShape
from app.dicom.filemeta import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from app.dicom.frames import swap_byte_order
from app.dicom.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    ENCAPSULATED,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    VIDEO,
)
from app.errors import LightboxError

__all__ = [
    "ANY_TRANSFER_SYNTAX",
    "IMPLEMENTATION_CLASS_UID",
    "LOSSY",
    "NOT_FOR_THE_WEB",
    "PixelModule",
    "TranscodeError",
    "can_decode",
    "check_decodable",
    "context_syntax",
    "decode_frame",
    "decode_frames",
    "output_syntax",
    "transcode",
]

ANY_TRANSFER_SYNTAX: Final = "*"
ENCAPSULATED_UNCOMPRESSED: Final = "1.2.840.10008.1.2.1.98"

#: NEG-08: never sent over the web; data stored so is converted to Explicit VR Little Endian
NOT_FOR_THE_WEB: Final = frozenset({IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN})

#: syntaxes that may hold lossy pixel data (NEG-07: the default is then the stored syntax)
LOSSY: Final = frozenset(
    {
        *(f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 52, 53, 54, 55, 56)),
        *(f"1.2.840.10008.1.2.4.{n}" for n in (59, 60, 61, 62, 63, 64)),
        "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossless or lossy)
        "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 (lossless or lossy)
        "1.2.840.10008.1.2.4.203",  # HTJ2K (lossless or lossy)
        "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG Recompression
        "1.2.840.10008.1.2.4.112",  # JPEG XL
        *VIDEO,
    }
)

#: the largest value an Explicit VR Little Endian Pixel Data element can hold (PS3.5 §7.1.1)
_MAX_NATIVE_PIXEL_BYTES: Final = 0xFFFFFFFE
#: native syntaxes pydicom re-encodes without decoding pixels
_REENCODED: Final = frozenset(
    {
        EXPLICIT_VR_LITTLE_ENDIAN,
        IMPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    }
)
#: word size of the binary VRs whose values pydicom keeps as bytes (swapped big -> little endian)
_BINARY_WORD: Final = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


class TranscodeError(LightboxError):
    """An instance or frame cannot be produced in the requested transfer syntax."""

    http_status = 406


def can_decode(transfer_syntax: str) -> bool:
    """Whether pixel data stored in ``transfer_syntax`` can be decoded to native pixels here.

    >>> can_decode("1.2.840.10008.1.2.4.90"), can_decode("1.2.840.10008.1.2.4.102")
    (True, False)
    """
    if transfer_syntax in _REENCODED or transfer_syntax == ENCAPSULATED_UNCOMPRESSED:
        return True
    if transfer_syntax not in ENCAPSULATED or transfer_syntax in VIDEO:
        return False
    try:
        return bool(get_decoder(transfer_syntax).is_available)
    except NotImplementedError:
        return False


def output_syntax(
    stored: str,
    requested: str | None,
    *,
    has_pixels: bool = True,
    native_pixel_bytes: int | None = None,
    within_limits: bool = True,
) -> str | None:
    """The syntax an instance stored in ``stored`` is sent in when ``requested`` is asked for.

    ``requested`` is None (no syntax asked for: the default, NEG-07), ``"*"`` (the server's
    choice: as stored, NEG-06) or a Transfer Syntax UID. None means it cannot be produced (406 or
    left out, WADO-03). ``native_pixel_bytes`` is the size the decoded pixel data would have, when
    known; ``has_pixels=False`` (no pixel data) makes every encapsulated syntax convertible.
    ``within_limits=False`` (decoding it would exceed the decode limits, issue 19) leaves the
    stored syntax only: the default then sends it as stored, like pixel data too large for
    Explicit VR Little Endian.

    >>> output_syntax("1.2.840.10008.1.2", "*")  # NEG-08
    '1.2.840.10008.1.2.1'
    >>> output_syntax("1.2.840.10008.1.2.4.50", None)  # lossy: the stored stream (NEG-07)
    '1.2.840.10008.1.2.4.50'
    >>> output_syntax("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1")
    '1.2.840.10008.1.2.1'
    >>> output_syntax("1.2.840.10008.1.2.5", None), output_syntax("1.2.840.10008.1.2.1", "1.2.3")
    ('1.2.840.10008.1.2.1', None)
    """
    if requested == ANY_TRANSFER_SYNTAX:
        return EXPLICIT_VR_LITTLE_ENDIAN if stored in NOT_FOR_THE_WEB else stored
    if requested == stored:
        return None if stored in NOT_FOR_THE_WEB else stored
    decodable = (can_decode(stored) and within_limits) or (not has_pixels and stored not in VIDEO)
    if requested is None:
        if stored == EXPLICIT_VR_LITTLE_ENDIAN:
            return stored
        if stored in LOSSY and has_pixels:
            return stored
        too_large = native_pixel_bytes is not None and native_pixel_bytes > _MAX_NATIVE_PIXEL_BYTES
        if stored in ENCAPSULATED and too_large:
            return stored  # NEG-07: would not fit in Explicit VR Little Endian
        if has_pixels and not within_limits and stored not in NOT_FOR_THE_WEB:
            return stored
        return EXPLICIT_VR_LITTLE_ENDIAN if decodable else None
    if requested == EXPLICIT_VR_LITTLE_ENDIAN and decodable:
        return EXPLICIT_VR_LITTLE_ENDIAN
    return None


#: what :func:`transcode` produces
PRODUCED: Final = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)


def context_syntax(
    stored: str,
    accepted: Sequence[str],
    *,
    has_pixels: bool = True,
    within_limits: bool = True,
) -> str | None:
    """The syntax an instance stored in ``stored`` goes out in to a DIMSE peer whose presentation
    contexts for its SOP class accept ``accepted`` (C-GET, C-MOVE; DIMSE-12), or None.

    As stored when a context accepts the stored syntax (Implicit VR and Big Endian included:
    NEG-08 is a rule of the web); else decoded or re-encoded to Explicit VR Little Endian, or to
    Implicit VR Little Endian, if a context accepts one of them; else it cannot be sent (a failed
    sub-operation). ``has_pixels`` and ``within_limits`` as for :func:`output_syntax`.

    >>> context_syntax("1.2.840.10008.1.2", ["1.2.840.10008.1.2"])
    '1.2.840.10008.1.2'
    >>> context_syntax("1.2.840.10008.1.2.4.50", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
    '1.2.840.10008.1.2.1'
    >>> context_syntax("1.2.840.10008.1.2.4.100", ["1.2.840.10008.1.2.1"]) is None  # video
    True
    """
    if stored in accepted:
        return stored
    decodable = (can_decode(stored) and within_limits) or (not has_pixels and stored not in VIDEO)
    if not decodable:
        return None
    return next((target for target in PRODUCED if target in accepted), None)


def transcode(
    raw: bytes, target: str = EXPLICIT_VR_LITTLE_ENDIAN, limits: DecodeLimits = DEFAULT_LIMITS
) -> bytes:
    """``raw`` (a PS3.10 file in any syntax pydicom reads) re-encoded in ``target``.

    Explicit VR Little Endian is produced, and Implicit VR Little Endian for DIMSE peers that
    accept nothing else (:func:`context_syntax`); :class:`TranscodeError` for any other target
    and for pixel data that cannot be decoded. The File Meta group is regenerated (WADO-04): a
    zero preamble, ``DICM``, Media Storage SOP Class/Instance UIDs from the data set, the new
    Transfer Syntax UID and Lightbox's Implementation Class UID and Version Name. Everything
    else, SOP Instance UID included, is kept. Decoded whole, the pixel data must stay within
    ``limits`` (:class:`~app.errors.DecodedSizeTooLarge`, checked before any codec runs).
    """
    if target not in PRODUCED:
        raise TranscodeError(f"cannot encode transfer syntax {target}")
    ds = dcmread(io.BytesIO(raw), force=True)
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    source = str(meta.get("TransferSyntaxUID", "") or "")
    if source == EXPLICIT_VR_BIG_ENDIAN:
        _to_little_endian(ds)
    else:
        for _ in ds.iterall():  # decode every element: some files mix in implicit VR ones
            pass
    if source in ENCAPSULATED | {DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN}:
        # (a deflated data set is inflated by now: the service checked it from the index first)
        check_decodable(ds, limits)
    if source in ENCAPSULATED and "PixelData" in ds:
        _decompress(ds, source)
    elif source not in _REENCODED and source not in ENCAPSULATED:
        raise TranscodeError(f"cannot decode transfer syntax {source or '(none)'}")
    ds.file_meta = _file_meta(ds, meta, target)
    ds.preamble = bytes(128)
    out = io.BytesIO()
    # dcmwrite, not save_as: save_as refuses a big -> little endian change (values swapped above)
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def check_decodable(ds: Dataset, limits: DecodeLimits, frames: int | None = None) -> None:
    """``frames`` frames of ``ds`` (None: all of them) decoded at once stay within ``limits``:
    the Image Pixel attributes, and for encapsulated pixel data the codestream each fragment
    starts (the codecs size their buffers from those)."""
    shape = PixelShape.of_dataset(ds)
    if shape is None:
        return
    limits.check_frames(shape, shape.number_of_frames if frames is None else frames)
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if syntax in ENCAPSULATED and "PixelData" in ds:
        limits.check_fragments(ds.PixelData)


def _decompress(ds: Dataset, source: str) -> None:
    if source == ENCAPSULATED_UNCOMPRESSED:
        count = _frame_count(ds)
        data = b"".join(generate_frames(ds.PixelData, number_of_frames=count))
        ds.PixelData = data + b"\0" * (len(data) % 2)
        ds["PixelData"].VR = "OB" if int(ds.get("BitsAllocated", 8) or 8) <= 8 else "OW"
        ds["PixelData"].is_undefined_length = False
        ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
        return
    if not can_decode(source):
        raise TranscodeError(f"pixel data in transfer syntax {source} cannot be decoded")
    try:
        ds.decompress(as_rgb=True, generate_instance_uid=False)
    except Exception as exc:  # the codecs raise anything from ValueError to RuntimeError
        raise TranscodeError(
            f"pixel data in transfer syntax {source} could not be decoded"
        ) from exc


def _to_little_endian(ds: Dataset) -> None:
    """Swap the binary values pydicom keeps as bytes; pydicom re-encodes the rest (PS3.5 §7.3)."""
    for elem in ds.iterall():  # converts raw elements, nested items included
        word = _BINARY_WORD.get(str(elem.VR))
        if word and isinstance(elem.value, bytes | bytearray):
            elem.value = swap_byte_order(bytes(elem.value), word)
    pixels = ds.data_element("PixelData")  # the element (ds.get would give its value)
    allocated = int(ds.get("BitsAllocated", 0) or 0)
    if pixels is not None and allocated > 16 and isinstance(pixels.value, bytes):
        # pixels wider than a word are swapped whole (PS3.5 §A.3), not word by word: undo the
        # word swap above, then swap each pixel
        value = pixels.value if pixels.VR != "OW" else swap_byte_order(pixels.value, 2)
        pixels.value = swap_byte_order(value, allocated // 8)


def _file_meta(
    ds: Dataset, old: FileMetaDataset, target: str = EXPLICIT_VR_LITTLE_ENDIAN
) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID") or old.get("MediaStorageSOPClassUID")
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or old.get(
        "MediaStorageSOPInstanceUID"
    )
    meta.TransferSyntaxUID = UID(target)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


# --- frames (FRM-05) ---


@dataclass(frozen=True, slots=True)
class PixelModule:
    """The Image Pixel attributes a codec needs to decode a frame (PS3.3 §C.7.6.3)."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int = 0

    @classmethod
    def from_dicom_json(cls, obj: Mapping[str, Any]) -> "PixelModule | None":
        """Read the attributes from a DICOM JSON object; None when one that is needed is missing.

        >>> PixelModule.from_dicom_json({"00280010": {"vr": "US", "Value": [2]}}) is None
        True
        """

        def value(tag: str) -> Any:
            item = obj.get(tag)
            values = item.get("Value") if isinstance(item, Mapping) else None
            return values[0] if isinstance(values, list) and values else None

        rows, columns, allocated = value("00280010"), value("00280011"), value("00280100")
        if not all(isinstance(v, int) and v > 0 for v in (rows, columns, allocated)):
            return None
        samples, stored = value("00280002"), value("00280101")
        representation, planar = value("00280103"), value("00280006")
        photometric = value("00280004")
        return cls(
            rows=rows,
            columns=columns,
            samples_per_pixel=samples if isinstance(samples, int) and samples > 0 else 1,
            bits_allocated=allocated,
            bits_stored=stored if isinstance(stored, int) and stored > 0 else allocated,
            pixel_representation=representation if representation in (0, 1) else 0,
            photometric_interpretation=str(photometric or "MONOCHROME2").strip(),
            planar_configuration=planar if planar in (0, 1) else 0,
        )

    @property
    def shape(self) -> PixelShape:
        """The decoded size of one frame (issue 19)."""
        return PixelShape(self.rows, self.columns, self.samples_per_pixel, self.bits_allocated)


def decode_frame(
    frame: bytes,
    transfer_syntax: str,
    pixels: PixelModule,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> bytes:
    """One encapsulated frame (its fragments joined) decoded to native little-endian pixels.

    :class:`TranscodeError` when the syntax cannot be decoded here or the codec fails;
    :class:`~app.errors.DecodedSizeTooLarge` when the frame, by ``pixels`` or by its codestream
    header, decodes beyond ``limits`` (checked before the codec runs).
    """
    limits.check_frame(pixels.shape)
    if transfer_syntax == ENCAPSULATED_UNCOMPRESSED:
        return frame
    limits.check_codestream(frame)
    if not can_decode(transfer_syntax) or transfer_syntax in _REENCODED:
        raise TranscodeError(f"frames in transfer syntax {transfer_syntax} cannot be decoded")
    decoder: Any = get_decoder(transfer_syntax)  # its options are typed loosely
    try:
        arr, _ = decoder.as_array(
            encapsulate([frame]),  # the decoders read encapsulated pixel data
            rows=pixels.rows,
            columns=pixels.columns,
            samples_per_pixel=pixels.samples_per_pixel,
            bits_allocated=pixels.bits_allocated,
            bits_stored=pixels.bits_stored,
            pixel_representation=pixels.pixel_representation,
            photometric_interpretation=pixels.photometric_interpretation,
            planar_configuration=pixels.planar_configuration,
            number_of_frames=1,
            as_rgb=True,
        )
    except Exception as exc:  # the codecs raise anything from ValueError to RuntimeError
        raise TranscodeError(
            f"a frame in transfer syntax {transfer_syntax} could not be decoded"
        ) from exc
    return _native_bytes(arr, pixels.bits_allocated)


def decode_frames(
    raw: bytes, numbers: Sequence[int], limits: DecodeLimits = DEFAULT_LIMITS
) -> list[bytes]:
    """Frames ``numbers`` (1-based) of the PS3.10 file ``raw`` as native little-endian pixels.

    For files whose frames are not byte ranges of the stored file (deflated data sets, fragments
    that cannot be mapped to frames); the file is parsed once, only the frames asked decoded.
    The frames asked must fit ``limits`` together (they are returned together).
    """
    out: list[bytes] = []
    try:
        ds = dcmread(io.BytesIO(raw), force=True)  # a deflated data set is inflated here
    except Exception as exc:
        raise TranscodeError("the frames of this instance could not be decoded") from exc
    check_decodable(ds, limits, len(numbers))
    try:
        bits = int(ds.get("BitsAllocated", 8) or 8)
        for number in numbers:
            arr = pixel_array(ds, index=number - 1, as_rgb=True)
            out.append(_native_bytes(arr, bits))
    except Exception as exc:  # the codecs raise anything from ValueError to RuntimeError
        raise TranscodeError("the frames of this instance could not be decoded") from exc
    return out


def _native_bytes(arr: "np.ndarray[Any, Any]", bits_allocated: int) -> bytes:
    if bits_allocated == 1:
        return pack_bits(arr)
    little = arr.dtype.newbyteorder("<")
    return np.ascontiguousarray(arr, dtype=little).tobytes()

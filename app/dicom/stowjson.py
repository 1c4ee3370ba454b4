"""PS3.10 instances from DICOM JSON metadata plus bulk data parts (STOW-02, PS3.18 §10.5.1.2.2).

A STOW-RS request of ``multipart/related; type="application/dicom+json"`` carries the instances'
metadata as DICOM JSON (PS3.18 Annex F) with ``BulkDataURI`` in place of large values, and the
values themselves as further parts, each bound to its URI by an equal ``Content-Location``. This
module turns one metadata object and the bulk values it references into the bytes of a PS3.10
file, which then goes through the ordinary ingest pipeline.

Pixel data in a compressed media type follows PS3.18 Table 10.5.2-1: JPEG, JPEG 2000 (jp2/jpx),
MPEG-2 and MPEG-4 bitstreams are encapsulated unchanged in the transfer syntax they name; GIF and
PNG are decoded and stored natively (lossless, Explicit VR Little Endian) with the image pixel
attributes set from the picture. Everything else is Explicit VR Little Endian.
"""

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from app.dicom.uids import ENCAPSULATED, EXPLICIT_VR_LITTLE_ENDIAN, VIDEO, is_valid_uid

__all__ = ["BulkPart", "StowJsonError", "build_instance", "jpeg_syntax"]

PIXEL_DATA: Final = "7FE00010"

#: Table 10.5.2-1: media types whose bitstream is encapsulated unchanged, and the transfer syntax
#: used when the part names none (JPEG: read from the frame header instead, see jpeg_syntax)
ENCAPSULATED_TYPES: Final = {
    "image/jpeg": None,
    "image/jp2": "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossless or lossy: the superset)
    "image/jpx": "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 multi-component
    "video/mpeg": "1.2.840.10008.1.2.4.100",  # MPEG-2 Main Profile / Main Level
    "video/mpeg2": "1.2.840.10008.1.2.4.100",
    "video/mp4": "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 High Profile / Level 4.1
}
#: Table 10.5.2-1: media types decoded and stored losslessly as native pixel data
LOSSLESS_TYPES: Final = frozenset({"image/gif", "image/png"})
_NATIVE_TYPES: Final = frozenset({"", "application/octet-stream"})


class StowJsonError(ValueError):
    """A metadata object or a bulk part that cannot make a valid instance (STOW-02)."""


@dataclass(frozen=True, slots=True)
class BulkPart:
    """One bulk data part: its media type essence, its transfer-syntax parameter, its bytes."""

    media_type: str
    data: bytes
    transfer_syntax: str | None = None


def jpeg_syntax(data: bytes) -> str:
    """The JPEG transfer syntax of a JPEG bitstream, from its SOF marker (PS3.5 §A.4.1).

    >>> jpeg_syntax(bytes.fromhex("ffd8ffc00008" + "00" * 6 + "ffda0008010100000000"))
    '1.2.840.10008.1.2.4.50'
    >>> jpeg_syntax(bytes.fromhex("ffd8ffc30008" + "00" * 6 + "ffda0008010100010000"))
    '1.2.840.10008.1.2.4.70'
    """
    i = 2
    sof: int | None = None
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC3) and sof is None:
            sof = marker
        if marker == 0xDA:  # start of scan: Ss is the predictor for lossless processes
            if sof == 0xC3:
                length = int.from_bytes(data[i + 2 : i + 4], "big")
                predictor = data[i + 2 + length - 3] if i + 2 + length - 3 < len(data) else 0
                return "1.2.840.10008.1.2.4.70" if predictor == 1 else "1.2.840.10008.1.2.4.57"
            break
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    if sof == 0xC0:
        return "1.2.840.10008.1.2.4.50"
    if sof == 0xC1:
        return "1.2.840.10008.1.2.4.51"
    if sof == 0xC3:
        return "1.2.840.10008.1.2.4.70"
    raise StowJsonError("image/jpeg bulk data is not a baseline, extended or lossless JPEG")


def _uid(ds: Dataset, keyword: str) -> str:
    value = str(ds.get(keyword, "") or "")
    if not is_valid_uid(value):
        raise StowJsonError(f"the metadata has no valid {keyword}")
    return value


def build_instance(obj: Mapping[str, Any], bulk: Mapping[str, BulkPart]) -> bytes:
    """The PS3.10 file made of one DICOM JSON object and the bulk parts it references."""
    used: dict[str, BulkPart] = {}
    pixel_part: list[BulkPart] = []

    def resolve(tag: str, _vr: str, uri: str) -> bytes:
        part = bulk.get(uri)
        if part is None:
            raise StowJsonError(f"BulkDataURI {uri} of ({tag[:4]},{tag[4:]}) matches no part")
        used[uri] = part
        if tag.upper() == PIXEL_DATA:
            pixel_part.append(part)
            return b""  # filled in below, once the pixel data's encoding is known
        if part.media_type not in _NATIVE_TYPES:
            raise StowJsonError(
                f"bulk data of ({tag[:4]},{tag[4:]}) has media type {part.media_type}; only "
                "pixel data may be compressed"
            )
        return part.data

    try:
        ds = Dataset.from_json(dict(obj), bulk_data_uri_handler=resolve)
    except StowJsonError:
        raise
    except Exception as exc:  # pydicom reports malformed JSON in many ways
        raise StowJsonError(f"invalid DICOM JSON: {exc}") from None
    sop_class = _uid(ds, "SOPClassUID")
    sop_uid = _uid(ds, "SOPInstanceUID")
    _uid(ds, "StudyInstanceUID")
    _uid(ds, "SeriesInstanceUID")

    syntax = EXPLICIT_VR_LITTLE_ENDIAN
    if pixel_part:
        syntax = _set_pixel_data(ds, pixel_part[0])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    out = io.BytesIO()
    try:
        ds.save_as(out, enforce_file_format=True)
    except Exception as exc:
        raise StowJsonError(f"the instance cannot be encoded: {exc}") from None
    return out.getvalue()


def _set_pixel_data(ds: Dataset, part: BulkPart) -> str:
    media = part.media_type
    if media in _NATIVE_TYPES:
        ds["PixelData"].value = part.data
        return EXPLICIT_VR_LITTLE_ENDIAN
    if media in LOSSLESS_TYPES:
        _decode_picture(ds, part.data, media)
        return EXPLICIT_VR_LITTLE_ENDIAN
    if media in ENCAPSULATED_TYPES:
        syntax = part.transfer_syntax or ENCAPSULATED_TYPES[media]
        if syntax is None:
            syntax = jpeg_syntax(part.data)
        if syntax not in ENCAPSULATED:
            raise StowJsonError(
                f"transfer-syntax {syntax} on a {media} part is not an encapsulated syntax"
            )
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames != 1 and syntax not in VIDEO:
            raise StowJsonError(f"one {media} part holds one frame, but NumberOfFrames is {frames}")
        ds["PixelData"].VR = "OB"
        ds["PixelData"].value = encapsulate([part.data], has_bot=syntax not in VIDEO)
        ds["PixelData"].is_undefined_length = True
        return syntax
    raise StowJsonError(f"pixel data of media type {media} is not supported (Table 10.5.2-1)")


_MODES: Final[dict[str, tuple[str, int]]] = {
    "L": ("MONOCHROME2", 1),
    "RGB": ("RGB", 3),
}


def _decode_picture(ds: Dataset, data: bytes, media: str) -> None:
    """Decode a GIF or PNG into native pixel data and set the Image Pixel attributes from it."""
    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            image = picture.convert("RGB" if picture.mode not in ("L", "I;16") else picture.mode)
    except Exception as exc:
        raise StowJsonError(f"the {media} pixel data cannot be decoded: {exc}") from None
    if image.mode == "I;16":
        pixels = np.asarray(image, dtype="<u2")
        photometric, samples, bits = "MONOCHROME2", 1, 16
    else:
        photometric, samples = _MODES[image.mode]
        pixels = np.asarray(image, dtype=np.uint8)
        bits = 8
    ds.Rows, ds.Columns = int(image.height), int(image.width)
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0
    if samples > 1:
        ds.PlanarConfiguration = 0
    if "NumberOfFrames" in ds:
        del ds.NumberOfFrames
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    ds["PixelData"].value = pixels.tobytes()

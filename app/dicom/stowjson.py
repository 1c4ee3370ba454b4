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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID
from pydicom.valuerep import VR

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
#: PS3.18 §F.2.2: an attribute's key is its tag, 8 hexadecimal digits
_TAG_KEY: Final = re.compile(r"[0-9A-Fa-f]{8}")
#: the VRs of PS3.5 Table 6.2-1 (pydicom's ambiguous "US or SS" and the like are not VRs)
_VRS: Final = frozenset(vr.value for vr in VR if " or " not in vr.value)
#: the most of a client's text (a key, a VR, a URI) an error message repeats
_ECHO: Final = 64


class StowJsonError(ValueError):
    """A metadata object or a bulk part that cannot make a valid instance (STOW-02).

    The message names the attribute (tag and VR) and what is wrong with it, never its value:
    it is logged, and values may be patient data.
    """


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
            raise StowJsonError(
                f"BulkDataURI {uri[:_ECHO]} of ({tag[:4]},{tag[4:]}) matches no part"
            )
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

    _check_attributes(obj)
    try:
        ds = Dataset.from_json(dict(obj), bulk_data_uri_handler=resolve)
    except StowJsonError:
        raise
    except Exception:  # pydicom reports malformed JSON in many ways, quoting the values
        raise StowJsonError(f"invalid DICOM JSON: {_unreadable(obj)}") from None
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
    except Exception as exc:  # pydicom's message holds the value and a traceback
        raise StowJsonError(f"the instance cannot be encoded: {_unencodable(ds, exc)}") from None
    return out.getvalue()


def _where(key: str) -> str:
    return f"({key[:4]},{key[4:]})".upper()


def _check_attributes(obj: Mapping[str, Any], within: str = "") -> None:
    """Refuse the keys and VRs that pydicom would misread or fail on obscurely (§F.2.2)."""
    for key, attr in obj.items():
        if not _TAG_KEY.fullmatch(key):
            raise StowJsonError(
                f"{within}attribute key {key[:_ECHO]!r} is not a tag of 8 hexadecimal "
                "digits (PS3.18 §F.2.2)"
            )
        where = within + _where(key)
        if not isinstance(attr, Mapping):
            raise StowJsonError(f"{where}: an attribute is a JSON object (PS3.18 §F.2.2)")
        vr = attr.get("vr")
        if not isinstance(vr, str) or vr not in _VRS:
            raise StowJsonError(f"{where}: vr {str(vr)[:_ECHO]!r} is not a VR of PS3.5 Table 6.2-1")
        if not within and key.startswith("0002"):
            raise StowJsonError(f"{where}: File Meta Information is not part of the metadata")
        items = attr.get("Value")
        if vr == "SQ" and isinstance(items, list):
            for number, item in enumerate(items, 1):
                if isinstance(item, Mapping):
                    _check_attributes(item, f"{where} item {number} ")


def _unreadable(obj: Mapping[str, Any]) -> str:
    """Which attribute pydicom could not read, and its VR (checked by _check_attributes)."""
    for key, attr in obj.items():
        try:
            Dataset.from_json({key: attr}, bulk_data_uri_handler=lambda *_: b"")
        except Exception as exc:
            return (
                f"{_where(key)} {attr['vr']}: the attribute is not valid for its VR "
                f"(PS3.18 Table F.2.3-1; {type(exc).__name__})"
            )
    return "the metadata object cannot be read"  # pragma: no cover - one attribute failed


def _unencodable(ds: Dataset, exc: Exception) -> str:
    """Which element pydicom could not encode (the innermost one), and its VR."""
    for elem in ds.iterall():
        if elem.VR == "SQ":
            continue  # its items' elements are visited too: the culprit is one of them
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        try:
            write_data_element(fp, elem)
        except Exception:
            tag = elem.tag
            return f"({tag.group:04X},{tag.element:04X}) {elem.VR}: a value does not fit the VR"
    return type(exc).__name__


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

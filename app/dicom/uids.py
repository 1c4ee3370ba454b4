"""UID validation (PS3.5 §9.1) and the transfer syntaxes Lightbox knows (PS3.5 §10, Annex A).

A UID is at most 64 characters of digits and dots; every component is non-empty and has no
leading zero unless it is the single digit ``0`` (PS3.5 §9.1). Validating every UID taken from an
instance before it names a stored object also blocks path tricks such as ``../../x``.

Transfer syntaxes fall in four groups that decide how ingest reads an instance:

* :data:`NATIVE`: the data set is read as is, pixel data is uncompressed (PS3.5 §A.1-A.3);
* :data:`DEFLATED`: the whole data set after the File Meta is deflated (PS3.5 §A.5), so it is
  inflated before parsing and frames are not byte ranges of the stored file;
* :data:`ENCAPSULATED`: explicit VR little endian with encapsulated pixel data (PS3.5 §A.4);
* :data:`REFERENCED`: JPIP referenced pixel data (PS3.5 §A.6/§A.7): no pixel data in the file.
"""

import re
from typing import Final

from app.errors import BadRequest

__all__ = [
    "DEFLATED",
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "ENCAPSULATED",
    "EXPLICIT_VR_BIG_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "KNOWN_TRANSFER_SYNTAXES",
    "NATIVE",
    "REFERENCED",
    "VIDEO",
    "is_known_transfer_syntax",
    "is_valid_uid",
    "validate_uid",
]

#: PS3.5 §9.1: components are "0" or start with a non-zero digit, separated by single dots
_UID_RE: Final = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
_UID_MAX_LENGTH: Final = 64


def is_valid_uid(value: object) -> bool:
    """Whether ``value`` is a UID per PS3.5 §9.1.

    >>> is_valid_uid("1.2.840.10008.1.2.1")
    True
    >>> is_valid_uid("1.02.3"), is_valid_uid("1..2"), is_valid_uid("../../x"), is_valid_uid("")
    (False, False, False, False)
    """
    return (
        isinstance(value, str)
        and 0 < len(value) <= _UID_MAX_LENGTH
        and _UID_RE.fullmatch(value) is not None
    )


def validate_uid(value: str, what: str) -> str:
    """Return ``value`` if it is a valid UID, else raise :class:`~app.errors.BadRequest`.

    ``what`` names the UID in the error message (for example ``"StudyInstanceUID"``).

    >>> validate_uid("1.2.3", "StudyInstanceUID")
    '1.2.3'
    >>> validate_uid("1.2.x", "StudyInstanceUID")
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: invalid StudyInstanceUID
    """
    if not is_valid_uid(value):
        raise BadRequest(f"invalid {what}")
    return value


# --- transfer syntaxes (PS3.6 Table A-1) ---

IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"  # retired, still read
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"

#: uncompressed pixel data in the data set itself (PS3.5 §A.1-A.3)
NATIVE: Final = frozenset(
    {IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN}
)

#: the data set after the File Meta is a raw deflate stream (PS3.5 §A.5); the JPIP *Deflate*
#: syntaxes deflate the data set too (PS3.5 §A.7)
DEFLATED: Final = frozenset(
    {
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        "1.2.840.10008.1.2.4.95",  # JPIP Referenced Deflate
        "1.2.840.10008.1.2.4.205",  # JPIP HTJ2K Referenced Deflate
    }
)

#: pixel data referenced by a JPIP URL (PS3.5 §A.6), data set explicit VR little endian
REFERENCED: Final = frozenset(
    {
        "1.2.840.10008.1.2.4.94",  # JPIP Referenced
        "1.2.840.10008.1.2.4.204",  # JPIP HTJ2K Referenced
    }
)

#: encapsulated pixel data (PS3.5 §A.4): fragments in items after a Basic Offset Table.
#: Deflated Image Frame Compression (1.2.840.10008.1.2.8.1) deflates each *frame*, not the data
#: set, so it is encapsulated, not :data:`DEFLATED`.
ENCAPSULATED: Final = frozenset(
    {
        "1.2.840.10008.1.2.1.98",  # Encapsulated Uncompressed Explicit VR Little Endian
        "1.2.840.10008.1.2.5",  # RLE Lossless
        "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression
        # JPEG (ISO/IEC 10918-1), including the retired processes
        *(f"1.2.840.10008.1.2.4.{n}" for n in range(50, 67)),
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 Multi-component Lossless
        "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 Multi-component
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
        "1.2.840.10008.1.2.4.203",  # HTJ2K
        "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
        "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG Recompression
        "1.2.840.10008.1.2.4.112",  # JPEG XL
        # MPEG-2, MPEG-4 AVC/H.264 (and their fragmentable variants), HEVC/H.265
        "1.2.840.10008.1.2.4.100",
        "1.2.840.10008.1.2.4.100.1",
        "1.2.840.10008.1.2.4.101",
        "1.2.840.10008.1.2.4.101.1",
        *(f"1.2.840.10008.1.2.4.{n}" for n in range(102, 107)),
        *(f"1.2.840.10008.1.2.4.{n}.1" for n in range(102, 107)),
        "1.2.840.10008.1.2.4.107",
        "1.2.840.10008.1.2.4.108",
    }
)

#: encapsulated video (PS3.5 §8.2.5-§8.2.8): one stream for all frames, no per-frame fragments
VIDEO: Final = frozenset(uid for uid in ENCAPSULATED if uid.startswith("1.2.840.10008.1.2.4.10"))

KNOWN_TRANSFER_SYNTAXES: Final = NATIVE | DEFLATED | REFERENCED | ENCAPSULATED


def is_known_transfer_syntax(uid: str) -> bool:
    """Whether ingest can read an instance in transfer syntax ``uid``.

    >>> is_known_transfer_syntax("1.2.840.10008.1.2.4.50")
    True
    >>> is_known_transfer_syntax("1.2.3.4")
    False
    """
    return uid in KNOWN_TRANSFER_SYNTAXES

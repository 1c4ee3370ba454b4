"""The PS3.10 File Meta Information Lightbox writes in front of a data set it received bare (a
C-STORE carries no File Meta: PS3.7 §9.3.1.1, PS3.10 §7.1), and our implementation's identity.

The header is the 128-byte preamble (zeros), ``DICM``, and group 0002 in Explicit VR Little
Endian with its group length: the SOP class and instance, the transfer syntax the data set is
encoded in, our Implementation Class UID and Version Name, and the sending AE title (PS3.10
Table 7.1-1). It is encoded here directly (seven elements, a few microseconds) rather than by
pydicom's writer, as it is made once per stored instance.
"""

import struct
from typing import Final

__all__ = ["IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION_NAME", "part10_header"]

#: Lightbox's Implementation Class UID (PS3.7 §D.3.3.2), a UUID-derived UID (PS3.5 §B.2)
IMPLEMENTATION_CLASS_UID: Final = "2.25.255338157301484437611208009458839604315"
IMPLEMENTATION_VERSION_NAME: Final = "LIGHTBOX_01"

_PREAMBLE: Final = bytes(128) + b"DICM"


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _even(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii")
    return raw + pad if len(raw) % 2 else raw


def part10_header(
    sop_class_uid: str, sop_uid: str, transfer_syntax: str, source_ae: str | None = None
) -> bytes:
    """Preamble, ``DICM`` and File Meta group for a data set encoded in ``transfer_syntax``.

    The UIDs must be valid (PS3.5 §9.1: ASCII digits and dots); ``source_ae`` is the AE title
    that sent the data set (0002,0016), when known.

    >>> import io, pydicom
    >>> head = part10_header("1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.840.10008.1.2", "CT1")
    >>> ds = pydicom.dcmread(io.BytesIO(head + bytes.fromhex("08001800 06000000") + b"1.2.3\\0"))
    >>> ds.file_meta.TransferSyntaxUID, ds.file_meta.SourceApplicationEntityTitle, ds.SOPInstanceUID
    ('1.2.840.10008.1.2', 'CT1', '1.2.3')
    >>> ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    True
    """
    body = b"".join(
        (
            _element(0x0001, b"OB", b"\x00\x01"),
            _element(0x0002, b"UI", _even(sop_class_uid, b"\0")),
            _element(0x0003, b"UI", _even(sop_uid, b"\0")),
            _element(0x0010, b"UI", _even(transfer_syntax, b"\0")),
            _element(0x0012, b"UI", _even(IMPLEMENTATION_CLASS_UID, b"\0")),
            _element(0x0013, b"SH", _even(IMPLEMENTATION_VERSION_NAME, b" ")),
            _element(0x0016, b"AE", _even(source_ae, b" ")) if source_ae else b"",
        )
    )
    return _PREAMBLE + _element(0x0000, b"UL", struct.pack("<I", len(body))) + body

"""The presentation contexts Lightbox accepts as an association acceptor (PS3.8 §9.3.2.2, PS3.7
§D.3.3): which abstract syntaxes (SOP classes) in which transfer syntaxes.

pynetdicom's storage contexts carry four transfer syntaxes only (the uncompressed ones and
Deflated); a modality sending JPEG, JPEG 2000 or video would have to decompress first, and the
stored bytes would no longer be what it produced. So every storage SOP class is offered in every
syntax of DIMSE-04, and the bytes are stored as they arrive. A context whose abstract syntax is not
here is rejected on its own (result 0x03, abstract syntax not supported); the association goes on.

When a requestor proposes several transfer syntaxes in one context, pynetdicom takes the first of
*ours* it proposed: the order below prefers what keeps every bit the modality holds (native, then
lossless compression), never asking a modality to compress lossily for us.
"""

from dataclasses import dataclass
from typing import Final

from pynetdicom import AllStoragePresentationContexts

__all__ = [
    "COMMITMENT",
    "QUERY_RETRIEVE",
    "RETIRED_STORAGE",
    "STORAGE_TRANSFER_SYNTAXES",
    "VERIFICATION",
    "SupportedContext",
    "storage_sop_classes",
    "supported_contexts",
]

#: DIMSE-04, in order of preference (see the module docstring)
STORAGE_TRANSFER_SYNTAXES: Final = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian (the DICOM default, PS3.5 §10.1)
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still accepted)
    # lossless compression
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 Multi-component Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
    # lossy, or either (accepted as the modality sends them: nothing is recompressed)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 Multi-component
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG Recompression
    "1.2.840.10008.1.2.4.112",  # JPEG XL
    # video: MPEG-2, MPEG-4 AVC/H.264 (and the fragmentable variants), HEVC/H.265
    "1.2.840.10008.1.2.4.100",
    "1.2.840.10008.1.2.4.100.1",
    "1.2.840.10008.1.2.4.101",
    "1.2.840.10008.1.2.4.101.1",
    "1.2.840.10008.1.2.4.102",
    "1.2.840.10008.1.2.4.102.1",
    "1.2.840.10008.1.2.4.103",
    "1.2.840.10008.1.2.4.103.1",
    "1.2.840.10008.1.2.4.104",
    "1.2.840.10008.1.2.4.104.1",
    "1.2.840.10008.1.2.4.105",
    "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106",
    "1.2.840.10008.1.2.4.106.1",
    "1.2.840.10008.1.2.4.107",
    "1.2.840.10008.1.2.4.108",
)
#: the uncompressed syntaxes (Verification, Storage Commitment: no pixel data)
_PLAIN: Final = (
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.2",
)
#: Verification SOP Class (PS3.4 Annex A)
VERIFICATION: Final = "1.2.840.10008.1.1"
#: Storage Commitment Push Model SOP Class (PS3.4 Annex J)
COMMITMENT: Final = "1.2.840.10008.1.20.1"
#: the Query/Retrieve SOP classes: Patient Root and Study Root, FIND, MOVE, GET (PS3.4 C.4;
#: DIMSE-07, 11, 13)
QUERY_RETRIEVE: Final = (
    "1.2.840.10008.5.1.4.1.2.1.1",
    "1.2.840.10008.5.1.4.1.2.1.2",
    "1.2.840.10008.5.1.4.1.2.1.3",
    "1.2.840.10008.5.1.4.1.2.2.1",
    "1.2.840.10008.5.1.4.1.2.2.2",
    "1.2.840.10008.5.1.4.1.2.2.3",
)


#: retired storage SOP classes (PS3.6 Table A-1) that older modalities still send and that
#: pynetdicom's list leaves out; DCMTK's storescp accepts them too
RETIRED_STORAGE: Final = (
    "1.2.840.10008.5.1.4.1.1.3",  # Ultrasound Multi-frame Image Storage (Retired)
    "1.2.840.10008.5.1.4.1.1.5",  # Nuclear Medicine Image Storage (Retired)
    "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (Retired)
    "1.2.840.10008.5.1.4.1.1.8",  # Standalone Overlay Storage (Retired)
    "1.2.840.10008.5.1.4.1.1.9",  # Standalone Curve Storage (Retired)
    "1.2.840.10008.5.1.4.1.1.10",  # Standalone Modality LUT Storage (Retired)
    "1.2.840.10008.5.1.4.1.1.11",  # Standalone VOI LUT Storage (Retired)
    "1.2.840.10008.5.1.4.1.1.12.3",  # X-Ray Angiographic Bi-Plane Image Storage (Retired)
    "1.2.840.10008.5.1.4.1.1.77.1",  # VL Image Storage - Trial (Retired)
    "1.2.840.10008.5.1.4.1.1.77.2",  # VL Multi-frame Image Storage - Trial (Retired)
    "1.2.840.10008.5.1.4.1.1.129",  # Standalone PET Curve Storage (Retired)
)


@dataclass(frozen=True, slots=True)
class SupportedContext:
    """One abstract syntax we accept, its transfer syntaxes, and whether we accept a requestor's
    proposed SCP/SCU role reversal for it (PS3.7 §D.3.3.4: C-GET's C-STOREs need it)."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    accept_roles: bool = False


def storage_sop_classes(private: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every storage SOP class pynetdicom knows (PS3.4 Annex B), the retired ones older
    modalities send, and ``private`` ones (DIMSE-03)."""
    standard = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]
    return tuple(dict.fromkeys([*standard, *RETIRED_STORAGE, *private]))


def supported_contexts(private_sop_classes: tuple[str, ...] = ()) -> list[SupportedContext]:
    """Verification, every storage SOP class, Storage Commitment Push Model and the
    Query/Retrieve SOP classes.

    The storage contexts accept role reversal so that a C-GET requestor (which acts as the
    storage SCP on its own association) can be served; a plain C-STORE proposes no roles.
    """
    return [
        SupportedContext(VERIFICATION, _PLAIN),
        *(
            SupportedContext(uid, STORAGE_TRANSFER_SYNTAXES, accept_roles=True)
            for uid in storage_sop_classes(private_sop_classes)
        ),
        SupportedContext(COMMITMENT, _PLAIN),
        *(SupportedContext(uid, _PLAIN) for uid in QUERY_RETRIEVE),
    ]

"""What is rendered: the kind of an instance, its dataset read from PS3.10 bytes, and the
dataset of one of its frames alone (PS3.3 C.7.6.16 functional groups at the top level)."""

import io
from typing import Final

from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

_SR_PREFIX: Final = "1.2.840.10008.5.1.4.1.1.88."
_ENCAPSULATED_PDF: Final = "1.2.840.10008.5.1.4.1.1.104.1"


class ObjectKind:
    """What an instance can be rendered as (REND-01/10)."""

    IMAGE = "image"
    SR = "sr"
    PDF = "pdf"
    NONE = "none"


def kind_of(sop_class_uid: str, has_pixels: bool) -> str:
    """The :class:`ObjectKind` of an instance.

    >>> kind_of("1.2.840.10008.5.1.4.1.1.88.11", False), kind_of("1.2.840.10008.5.1.4.1.1.2", True)
    ('sr', 'image')
    """
    if has_pixels:
        return ObjectKind.IMAGE
    if sop_class_uid.startswith(_SR_PREFIX):
        return ObjectKind.SR
    if sop_class_uid == _ENCAPSULATED_PDF:
        return ObjectKind.PDF
    return ObjectKind.NONE


def read_dataset(raw: bytes, *, stop_before_pixels: bool = False) -> Dataset:
    """The dataset of a PS3.10 file (pixel data kept as bytes, decoded per frame later)."""
    ds = dcmread(io.BytesIO(raw), force=True, stop_before_pixels=stop_before_pixels)
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        # a bare dataset (no File Meta): its encoding as read tells the syntax
        implicit, little = ds.original_encoding
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else ExplicitVRLittleEndian
            if little
            else ExplicitVRBigEndian
        )
    return ds


#: functional group macros whose attributes the pipeline reads at the top level (PS3.3 C.7.6.16)
_FRAME_MACROS: Final = ("PixelValueTransformationSequence", "FrameVOILUTSequence")


def frame_attributes(ds: Dataset, number: int) -> Dataset:
    """``ds`` with frame ``number``'s rescale and VOI from the functional groups at top level.

    Enhanced multi-frame objects (PS3.3 C.7.6.16) keep RescaleSlope/Intercept and
    WindowCenter/Width in the Shared or Per-frame Functional Groups; a per-frame value wins over
    a shared one. Other objects are returned unchanged.

    >>> ds = Dataset(); item = Dataset(); voi = Dataset()
    >>> voi.WindowCenter, voi.WindowWidth = 40, 400
    >>> item.FrameVOILUTSequence = [voi]
    >>> ds.PerFrameFunctionalGroupsSequence = [Dataset(), item]
    >>> (float(frame_attributes(ds, 2).WindowCenter), "WindowCenter" in frame_attributes(ds, 1))
    (40.0, False)
    """
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not shared and not per_frame:
        return ds
    groups: list[Dataset] = []
    if shared:
        groups.append(shared[0])
    if per_frame and 0 < number <= len(per_frame):
        groups.append(per_frame[number - 1])
    flat = Dataset(dict(ds.items()))  # a new element dict: ``ds`` itself stays unchanged
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        flat.file_meta = meta
    for group in groups:
        for macro in _FRAME_MACROS:
            if macro in group and len(group[macro].value) > 0:
                for element in group[macro].value[0]:
                    flat[element.tag] = element
    return flat


def single_frame_dataset(header: bytes, frame: bytes, number: int) -> Dataset:
    """A one-frame dataset from a blob's header bytes and frame ``number``'s stored bytes.

    Lets a multi-frame instance be rendered from byte ranges (header + one frame) rather than
    the whole blob. ``frame`` is native pixel data or one frame's encapsulated bytes.
    """
    ds = frame_attributes(read_dataset(header, stop_before_pixels=True), number)
    for keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        if keyword in ds:
            del ds[keyword]
    ds.NumberOfFrames = 1
    if UID(ds.file_meta.TransferSyntaxUID).is_encapsulated:
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = frame
        ds["PixelData"].VR = "OB" if int(ds.get("BitsAllocated", 8)) <= 8 else "OW"
    return ds

"""The transfer syntax each instance goes out in (PS3.18 §8.7.3, NEG-06..09, WADO-03).

Decided from the index's values alone, before any blob is read, so the status (200, 206 with
instances left out, 406) is known before the first byte (STYLE.md C5). ``*`` sends the stored
bytes (Implicit VR Little Endian and Explicit VR Big Endian converted to Explicit VR Little
Endian, NEG-08); a UID equal to the stored syntax sends the stored bytes; no syntax asked for
means Explicit VR Little Endian (NEG-07, with the lossy and too-large exceptions of
:mod:`app.dicom.transcode`); Explicit VR Little Endian is produced from every syntax the decoders
read; other syntaxes are not produced.

What a transcode would decode is bounded from the index's values (issue 19): an instance too large
to decode is sent as stored by default and left out when another syntax is asked for
(:func:`decode_refusal` says why).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.dicom.decoding import DecodeLimits, PixelShape
from app.dicom.parse import PART10_PREFIX_LENGTH
from app.dicom.transcode import context_syntax, output_syntax
from app.dicom.uids import DEFLATED, ENCAPSULATED
from app.errors import DecodedSizeTooLarge
from app.index.retrieval import InstanceRef

__all__ = [
    "Planned",
    "Selection",
    "decode_refusal",
    "index_shape",
    "native_pixel_bytes",
    "plan",
    "producible",
    "select",
    "select_contexts",
    "stored_length",
]


def index_shape(
    rows: int | None,
    columns: int | None,
    bits_allocated: int | None,
    number_of_frames: int | None,
) -> PixelShape | None:
    """The decoded size of an instance from the index's values, or None when unknown.

    A lower bound: the index keeps no SamplesPerPixel (one is assumed); the exact check runs
    where the attributes are read. NumberOfFrames below 1 (indexed before ingest checked it)
    counts as 1.

    >>> index_shape(40000, 40000, 16, 1).frame_bytes
    3200000000
    """
    if not (rows and columns and bits_allocated) or min(rows, columns, bits_allocated) < 1:
        return None
    return PixelShape(rows, columns, 1, bits_allocated, max(1, number_of_frames or 1))


def decode_refusal(ref: InstanceRef, limits: DecodeLimits) -> str | None:
    """Why transcoding ``ref`` whole would exceed ``limits`` (None: it would not, or nothing of
    it is decoded: native syntaxes are re-encoded, not decoded)."""
    if ref.number_of_frames is None or ref.transfer_syntax_uid not in ENCAPSULATED | DEFLATED:
        return None
    shape = index_shape(ref.rows, ref.columns, ref.bits_allocated, ref.number_of_frames)
    if shape is None:
        return None
    try:
        limits.check_instance(shape)
    except DecodedSizeTooLarge as exc:
        return exc.message
    return None


def native_pixel_bytes(ref: InstanceRef) -> int | None:
    """A lower bound of the instance's decoded pixel data size (one sample per pixel)."""
    if None in (ref.rows, ref.columns, ref.bits_allocated, ref.number_of_frames):
        return None
    return (
        (ref.rows or 0)
        * (ref.columns or 0)
        * (ref.bits_allocated or 0)
        * (ref.number_of_frames or 0)
    ) // 8


def stored_length(ref: InstanceRef) -> int | None:
    """The length of ``ref`` sent as stored, a PS3.10 file (see :mod:`.blobs`), known without
    reading its blob; None for instances indexed before that was recorded.

    >>> ref = InstanceRef("1", "2", "3", "k", 1000, "1.2.840.10008.1.2.1", part10_prefix=False)
    >>> stored_length(ref)
    1132
    """
    if ref.part10_prefix is None:
        return None
    return ref.size + (0 if ref.part10_prefix else PART10_PREFIX_LENGTH)


def plan(ref: InstanceRef, requested: str | None, limits: DecodeLimits | None = None) -> str | None:
    """The syntax ``ref`` goes out in when ``requested`` is asked for; None if not producible.

    ``requested`` is None (the default, NEG-07), ``"*"`` (as stored, NEG-06) or a UID;
    ``limits`` bound what decoding it may take (:func:`decode_refusal`).
    """
    return output_syntax(
        ref.transfer_syntax_uid,
        requested,
        has_pixels=ref.number_of_frames is not None,
        native_pixel_bytes=native_pixel_bytes(ref),
        within_limits=limits is None or decode_refusal(ref, limits) is None,
    )


def producible(stored: str, requested: str | None) -> bool:
    """Whether an instance stored in ``stored`` can be sent when ``requested`` is asked for.

    >>> producible("1.2.840.10008.1.2.4.50", "*"), producible("1.2.840.10008.1.2.1", None)
    (True, True)
    >>> producible("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50")
    False
    """
    return output_syntax(stored, requested) is not None


@dataclass(frozen=True, slots=True)
class Planned:
    """One instance to send and the transfer syntax it goes out in."""

    ref: InstanceRef
    transfer_syntax: str

    @property
    def transcoded(self) -> bool:
        return self.transfer_syntax != self.ref.transfer_syntax_uid


@dataclass(frozen=True, slots=True)
class Selection:
    """The instances to send for one transfer syntax request, and how many are left out."""

    items: list[Planned]
    omitted: int
    #: the instances left out, in order
    left_out: tuple[InstanceRef, ...] = ()

    @property
    def refs(self) -> list[InstanceRef]:
        return [item.ref for item in self.items]

    @property
    def transfer_syntax(self) -> str | None:
        """The syntax every selected instance is sent in, or None when they differ."""
        syntaxes = {item.transfer_syntax for item in self.items}
        return syntaxes.pop() if len(syntaxes) == 1 else None


def select(
    refs: Sequence[InstanceRef], requested: str | None, limits: DecodeLimits | None = None
) -> Selection:
    """Plan the instances that can be sent for ``requested`` (WADO-03), in their order."""
    items: list[Planned] = []
    left_out: list[InstanceRef] = []
    for ref in refs:
        syntax = plan(ref, requested, limits)
        if syntax is not None:
            items.append(Planned(ref, syntax))
        else:
            left_out.append(ref)
    return Selection(items, len(left_out), tuple(left_out))


def select_contexts(
    refs: Sequence[InstanceRef],
    syntaxes_for: Callable[[str], Sequence[str]],
    limits: DecodeLimits | None = None,
) -> Selection:
    """Plan each instance for a DIMSE peer's presentation contexts (DIMSE-12/13):
    ``syntaxes_for(sop_class)`` are the syntaxes its contexts accept for that SOP class; an
    instance none can carry is left out (a failed sub-operation)."""
    items: list[Planned] = []
    left_out: list[InstanceRef] = []
    for ref in refs:
        syntax = context_syntax(
            ref.transfer_syntax_uid,
            syntaxes_for(ref.sop_class_uid),
            has_pixels=ref.number_of_frames is not None,
            within_limits=limits is None or decode_refusal(ref, limits) is None,
        )
        if syntax is not None:
            items.append(Planned(ref, syntax))
        else:
            left_out.append(ref)
    return Selection(items, len(left_out), tuple(left_out))

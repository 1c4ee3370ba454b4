"""What a retrieve is asked (typed requests) and what it answers (parts and their media types).

A front end translates its protocol into these values and back: the HTTP API parses ``Accept``
(PS3.18 §8.7) into :class:`Accepted` and writes an :class:`Answer` as a multipart/related or
single-part body; a DIMSE C-GET / C-MOVE would give the transfer syntaxes of its presentation
contexts as an :class:`Accepted` and send the parts as C-STORE sub-operations. The service
decides between the representations (:mod:`.choice`), reads the index and the blobs, and leaves
the wire (status, headers, boundaries, URLs) to the front end.
"""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from app.dicom.target import Target

__all__ = [
    "Acceptable",
    "Accepted",
    "Answer",
    "BulkRequest",
    "InstancesRequest",
    "Part",
    "PartHead",
    "PixelsRequest",
]


@dataclass(frozen=True, slots=True)
class Acceptable:
    """One representation a caller accepts (a media range of ``Accept``, a presentation
    context).

    ``media_type`` is what one value is sent as (``application/dicom``,
    ``application/octet-stream``, ``image/jp2``, ...) or a wildcard (``*/*``, ``image/*``,
    ``application/*``); ``transfer_syntax`` is None (not named: the category's default), ``"*"``
    (as stored, NEG-06) or a UID; ``whole`` asks for the value alone rather than as one part
    of a multipart body (NEG-11), which only a single value can be.
    """

    media_type: str
    transfer_syntax: str | None = None
    q: float = 1.0
    whole: bool = False


@dataclass(frozen=True, slots=True)
class Accepted:
    """What a caller accepts: groups in decreasing precedence (PS3.18 §8.7.8.1: the ``accept``
    query parameter, then the Accept header), each in the caller's order.

    A group may be empty (nothing in it is a representation of the category); ``unnamed`` is the
    refusal when there is no group at all (NEG-04: a strict server, no Accept header).
    """

    groups: tuple[tuple[Acceptable, ...], ...]
    unnamed: str = "no acceptable representation was named"

    @classmethod
    def of(cls, *acceptable: Acceptable) -> "Accepted":
        """One group: a DIMSE association's syntaxes, a test's request.

        >>> Accepted.of(Acceptable("application/dicom", "*")).groups[0][0].transfer_syntax
        '*'
        """
        return cls((tuple(acceptable),))


@dataclass(frozen=True, slots=True)
class InstancesRequest:
    """Retrieve the instances of a study, series or instance (RES-03, WADO-01..03)."""

    target: Target
    accepted: Accepted


@dataclass(frozen=True, slots=True)
class PixelsRequest:
    """Retrieve frames of an instance (frames target, FRM-01..06), or every frame of the
    instances of a study, series or instance (``/pixeldata``, FRM-07)."""

    target: Target
    accepted: Accepted


@dataclass(frozen=True, slots=True)
class BulkRequest:
    """Retrieve one bulk data value of an instance (``path``: ``tag(/item/tag)*``, BULK-01/02),
    or every value of a study, series or instance (``path`` None, BULK-03)."""

    target: Target
    accepted: Accepted
    path: str | None = None


@dataclass(frozen=True, slots=True)
class PartHead:
    """What a part is, known before its bytes are read.

    ``instance`` names the instance it comes from and ``location`` the resource below it
    (``""``, ``/frames/3``, ``/bulkdata/7FE00010``): the HTTP front end turns them into the
    part's Content-Location.
    """

    media_type: str  # the part's type with its parameters (``transfer-syntax=``)
    length: int | None
    instance: Target
    location: str = ""


@dataclass(frozen=True, slots=True)
class Part:
    """One part of an answer: its head and its bytes, read while they are written."""

    head: PartHead
    chunks: AsyncIterator[bytes]


@dataclass(slots=True)
class Answer:
    """What a retrieve sends: parts in order, the first already read or opened (so every
    refusal happened before it returns, STYLE.md C5).

    ``media_type`` is what the parts are (without parameters), ``transfer_syntax`` the syntax
    they all are in (None when they differ or have none); ``whole`` says the single part is to
    be sent alone (NEG-11). ``omission`` says what was left out and why (WADO-03: HTTP answers
    206 with a Warning). ``heads`` lists every part's head when all are known before any more
    blob is read (the body's length can then be announced).
    """

    parts: AsyncIterator[Part]
    media_type: str
    transfer_syntax: str | None = None
    whole: bool = False
    omission: str | None = None
    heads: Sequence[PartHead] | None = None

    async def aclose(self) -> None:
        """Release what the parts hold (an answer abandoned before it was written)."""
        aclose = getattr(self.parts, "aclose", None)
        if aclose is not None:
            await aclose()

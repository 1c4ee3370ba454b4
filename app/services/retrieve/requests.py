"""What a retrieve is asked (typed requests) and what it answers (parts and their media types).

A front end translates its protocol into these values and back: the HTTP API parses ``Accept``
(PS3.18 §8.7) into :class:`Accepted` and writes an :class:`Answer` as a multipart/related or
single-part body; a DIMSE C-GET / C-MOVE gives the presentation contexts its peer accepted as
an :class:`Accepted` (:meth:`Accepted.contexts`) and sends the parts as C-STORE sub-operations.
The service decides between the representations (:mod:`.choice`), reads the index and the
blobs, and leaves the wire (status, headers, boundaries, URLs) to the front end.
"""

from collections.abc import AsyncIterator, Iterable, Sequence
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
    #: a presentation context's abstract syntax: only instances of that SOP class may be sent
    #: this way (None: any instance)
    sop_class: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """What a caller accepts: groups in decreasing precedence (PS3.18 §8.7.8.1: the ``accept``
    query parameter, then the Accept header), each in the caller's order.

    A group may be empty (nothing in it is a representation of the category); ``unnamed`` is the
    refusal when there is no group at all (NEG-04: a strict server, no Accept header).
    """

    groups: tuple[tuple[Acceptable, ...], ...]
    unnamed: str = "no acceptable representation was named"
    #: presentation contexts (a DIMSE peer, :meth:`contexts`): each instance goes out on its
    #: own SOP class's contexts, as stored when one accepts the stored syntax, else transcoded
    #: to an uncompressed syntax one accepts; every syntax named may be sent, Implicit VR
    #: included (NEG-08 is a rule of the web). Instances that no context can carry are left out.
    per_instance: bool = False

    @classmethod
    def of(cls, *acceptable: Acceptable) -> "Accepted":
        """One group: a test's request, a caller with one list of representations.

        >>> Accepted.of(Acceptable("application/dicom", "*")).groups[0][0].transfer_syntax
        '*'
        """
        return cls((tuple(acceptable),))

    @classmethod
    def contexts(cls, contexts: Iterable[tuple[str, str]]) -> "Accepted":
        """The presentation contexts a DIMSE peer accepted, as (SOP class UID, transfer syntax
        UID) pairs, for a C-GET or C-MOVE (PS3.4 §C.4.2.3.1, §C.4.3.3.1).

        >>> accepted = Accepted.contexts([("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2")])
        >>> accepted.per_instance, accepted.groups[0][0].sop_class
        (True, '1.2.840.10008.5.1.4.1.1.2')
        """
        acceptable = tuple(
            Acceptable("application/dicom", syntax, sop_class=sop_class)
            for sop_class, syntax in contexts
        )
        return cls((acceptable,), "no storage presentation context was accepted", True)

    def syntaxes_for(self, sop_class: str) -> tuple[str, ...]:
        """The transfer syntaxes the contexts accept for ``sop_class``, in order.

        >>> Accepted.contexts([("1.2", "1.2.840.10008.1.2"), ("1.3", "x")]).syntaxes_for("1.2")
        ('1.2.840.10008.1.2',)
        """
        return tuple(
            a.transfer_syntax
            for group in self.groups
            for a in group
            if a.transfer_syntax is not None and a.sop_class in (None, sop_class)
        )


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
    #: why this instance cannot be sent (its transcoding failed, its blob is unreadable): only
    #: for presentation contexts (:attr:`Accepted.per_instance`), where one instance's failure
    #: is a failed sub-operation and the others go on; ``chunks`` is then empty
    failure: str | None = None


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
    #: the instances of the target left out (the ``omission``), in order
    left_out: Sequence[Target] = ()

    async def aclose(self) -> None:
        """Release what the parts hold (an answer abandoned before it was written)."""
        aclose = getattr(self.parts, "aclose", None)
        if aclose is not None:
            await aclose()

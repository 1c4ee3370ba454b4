"""Retrieve frames and pixel data (PS3.18 §10.4.1.1.4-6; RES-08, FRM-01..07).

One call (:meth:`PixelRetrieval.retrieve`) per request: frames of an instance (a frames target,
in the order asked), or ``/pixeldata`` of an instance (its frames), a series or a study (every
frame of every instance with pixel data, in WADO-01 order). Each instance's representation is
chosen from what the caller accepts and what its frames allow (:func:`~.choice.choose_frames`);
an instance of a series or study whose frames cannot be sent as asked is left out (WADO-03),
one of a single instance is refused. The first frame is read (and decoded) before the answer
returns (STYLE.md C5); the others are read when the previous one was sent.
"""

from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from app.dicom.target import Level, Target
from app.errors import NotAcceptable
from app.services.retrieve.choice import FrameRepresentation, choose_frames
from app.services.retrieve.context import close, once
from app.services.retrieve.framesets import FrameReader, FrameSet
from app.services.retrieve.requests import Accepted, Answer, Part, PartHead, PixelsRequest

__all__ = ["PixelRetrieval"]

#: a frame set with the representation its frames go out in
Plan = tuple[FrameSet, FrameRepresentation]


def choose(accepted: Accepted, frame_set: FrameSet, *, whole: bool = False) -> FrameRepresentation:
    """The representation of ``frame_set``'s frames, or :class:`NotAcceptable` (FRM-05)."""
    if frame_set.refusal is not None and not (frame_set.as_stored or frame_set.decodable):
        # a deflated data set too large to inflate: no representation of its frames at all
        raise NotAcceptable(f"the frames of this instance cannot be read: {frame_set.refusal}")
    return choose_frames(
        accepted,
        frame_set.source.transfer_syntax_uid,
        native=frame_set.native,
        as_stored=frame_set.as_stored,
        decodable=frame_set.decodable,
        whole=whole,
        refusal=frame_set.refusal,
    )


class PixelRetrieval:
    """The frames and pixel data use case over a :class:`~.framesets.FrameReader`."""

    def __init__(self, frames: FrameReader) -> None:
        self._frames = frames

    async def retrieve(self, request: PixelsRequest) -> Answer:
        """The frames the request names, one part each (see the module docstring)."""
        target, accepted = request.target, request.accepted
        omission = None
        if target.level is Level.FRAMES:
            frame_set = await self._frames.frames(target)
            whole = len(target.frames or ()) == 1
            plans: list[Plan] = [(frame_set, choose(accepted, frame_set, whole=whole))]
        elif target.level is Level.INSTANCE:
            sets, unreadable = await self._frames.pixel_sources(target)
            if unreadable:
                raise NotAcceptable(
                    "the pixel data of this instance cannot be sent frame by frame (video or "
                    "undecodable); retrieve the instance or its BulkDataURI instead"
                )
            [frame_set] = sets
            whole = len(frame_set.numbers) == 1
            plans = [(frame_set, choose(accepted, frame_set, whole=whole))]
        else:
            plans, omission = await self._every_frame(target, accepted)
        parts = self._parts(plans)
        first = await anext(parts)
        first_rep = plans[0][1]
        if first_rep.whole:
            await parts.aclose()
            rest: AsyncIterator[Part] | None = None
        else:
            rest = parts
        syntaxes = {rep.transfer_syntax for _, rep in plans}
        return Answer(
            _chain(first, rest),
            first_rep.media_type,
            syntaxes.pop() if len(syntaxes) == 1 else None,
            whole=first_rep.whole,
            omission=omission,
        )

    async def _every_frame(
        self, target: Target, accepted: Accepted
    ) -> tuple[list[Plan], str | None]:
        """The plans of a series' or study's instances with pixel data, and what was left out."""
        sets, unreadable = await self._frames.pixel_sources(target)
        omitted = unreadable
        plans: list[Plan] = []
        refusal: NotAcceptable | None = None
        for frame_set in sets:
            try:
                plans.append((frame_set, choose(accepted, frame_set)))
            except NotAcceptable as exc:
                refusal = exc
                omitted += 1
        if not plans:
            raise refusal or NotAcceptable(
                "the pixel data of these instances cannot be sent frame by frame (video or "
                "undecodable)"
            )
        omission = None
        if omitted:
            omission = (
                f"{omitted} of {len(sets) + unreadable} instances with pixel data left out: "
                "their frames cannot be sent as asked"
            )
        return plans, omission

    async def _parts(self, plans: Sequence[Plan]) -> AsyncGenerator[Part, None]:
        """One part per frame; each frame is read (and decoded) when the previous one was
        sent."""
        for frame_set, rep in plans:
            source = frame_set.source
            instance = Target(source.study_uid, source.series_uid, source.sop_uid)
            if rep.decode:
                frame_set = await self._frames.prepare_decoding(frame_set)
            numbers = iter(frame_set.numbers)
            async for data in self._frames.iter_frames(frame_set, decode=rep.decode):
                head = PartHead(rep.part_type, len(data), instance, f"/frames/{next(numbers)}")
                yield Part(head, once(data))


async def _chain(first: Part, rest: AsyncIterator[Part] | None) -> AsyncIterator[Part]:
    try:
        yield first
        if rest is not None:
            async for part in rest:
                yield part
    finally:
        if rest is not None:
            await close(rest)

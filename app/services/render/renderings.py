"""Rendered resources and thumbnails, each one call from a typed request (PS3.18 §10.4.1.1.3-4;
RES-05/06, REND-01..10, THUMB-01/02).

Levels (REND-08): an instance is one image (frame 1; a multi-frame instance asked for as a bare
``image/gif`` becomes an animated GIF of at most :data:`MAX_ANIMATION_FRAMES` frames), an SR as
text or an encapsulated PDF (REND-10); frames are one image per listed frame (one image alone,
or an animated GIF when ``image/gif`` is asked for alone); a study or series is one rendering per
image instance, in WADO-01 order, instances without pixel data left out, and an instance that
cannot be decoded left out once the first was rendered. A thumbnail is the representative frame
of the target (:func:`~.service.thumbnail_choice`) in a small box, without annotation.

The representation is chosen from what the caller accepts (:func:`choose_rendered`) once the
instances are known; the entity tag (REND-09) is computed before anything is rendered, so a
caller whose copy is current gets no body; the first rendering is made before the answer
returns, so its failure is the request's status (STYLE.md C5).
"""

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from app.dicom import render as rendering
from app.dicom.render import (
    GIF,
    IMAGE_TYPES,
    PDF,
    TEXT_HTML,
    TEXT_PLAIN,
    ObjectKind,
    RenderParameterError,
    RenderParams,
    Viewport,
)
from app.dicom.target import Level, Target
from app.errors import BadRequest, DecodedSizeTooLarge, DecoderFailed, NotAcceptable, NotFound
from app.index.rendering import RenderSource
from app.services.render.sources import kind, render_etag, thumbnail_choice
from app.services.retrieve import Accepted, Part, PartHead
from app.services.retrieve.context import once

if TYPE_CHECKING:
    from app.services.render.service import RenderService

__all__ = [
    "MAX_ANIMATION_FRAMES",
    "Choice",
    "RenderRequest",
    "Rendering",
    "ThumbnailRequest",
    "choose_rendered",
    "instance_frames",
    "offered_types",
    "rendered",
    "thumbnail",
]

#: animated GIFs stop at this many frames (memory and time bound); the rest are left out
MAX_ANIMATION_FRAMES = 500


@dataclass(frozen=True, slots=True)
class Choice:
    """The representation chosen: a media type, alone or as parts of a multipart body."""

    media_type: str
    multipart: bool = False


def _match(essence: str, offered: Sequence[str]) -> str | None:
    if essence == "*/*":
        return offered[0] if offered else None
    if essence.endswith("/*"):
        prefix = essence[:-1]
        return next((o for o in offered if o.startswith(prefix)), None)
    return essence if essence in offered else None


def choose_rendered(accepted: Accepted, offered: Sequence[str], *, multipart: bool) -> Choice:
    """Choose among ``offered`` (the default first) for the Rendered category (PS3.18 §8.7.4).

    In each group the highest ``q`` wins, ties in the caller's order; a type accepted as a part
    (``whole`` false: ``multipart/related; type=X``) is a multipart answer, when ``multipart``
    allows one. 406 when nothing fits.

    >>> from app.services.retrieve import Acceptable
    >>> choose_rendered(Accepted.of(Acceptable("image/*", q=0.5, whole=True),
    ...                             Acceptable("image/gif", whole=True)),
    ...                 IMAGE_TYPES, multipart=True)
    Choice(media_type='image/gif', multipart=False)
    """
    for group in accepted.groups:
        for acceptable in sorted(group, key=lambda a: -a.q):
            if not acceptable.whole and not multipart:
                continue
            chosen = _match(acceptable.media_type, offered)
            if chosen is not None:
                return Choice(chosen, not acceptable.whole)
    raise NotAcceptable(
        "acceptable here: " + ", ".join(offered) if offered else "this object cannot be rendered"
    )


def offered_types(kinds: Sequence[str]) -> tuple[str, ...]:
    """What a target can be rendered as (REND-01/10): images, SR text or PDF."""
    if ObjectKind.IMAGE in kinds:
        return IMAGE_TYPES
    if kinds == [ObjectKind.SR]:
        return (TEXT_HTML, TEXT_PLAIN)
    if kinds == [ObjectKind.PDF]:
        return (PDF,)
    return ()


def instance_frames(source: RenderSource, choice: Choice) -> tuple[int, ...]:
    """REND-08: all frames (animated GIF) when GIF is asked for single-part, else frame 1."""
    frames = source.number_of_frames or 1
    if choice.media_type == GIF and not choice.multipart and frames > 1:
        return tuple(range(1, min(frames, MAX_ANIMATION_FRAMES) + 1))
    return (1,)


def with_media_type(params: RenderParams, media_type: str, iccprofile: str | None) -> RenderParams:
    """``params`` for ``media_type``, with ``iccprofile`` checked against it (REND-07)."""
    try:
        icc = None if iccprofile is None else rendering.parse_iccprofile(iccprofile, media_type)
    except RenderParameterError as exc:
        raise BadRequest(str(exc)) from exc
    return replace(params, media_type=media_type, iccprofile=icc)


@dataclass(frozen=True, slots=True)
class RenderRequest:
    """Render a study, series, instance or frames (``params`` checked, their media type set
    from the choice; ``current``: the entity tags of the copies the caller has, ``*`` any)."""

    target: Target
    accepted: Accepted
    params: RenderParams
    iccprofile: str | None = None
    current: Collection[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class ThumbnailRequest:
    """A thumbnail of a study, series, instance or frame, fitting ``viewport`` (default 128)."""

    target: Target
    accepted: Accepted
    viewport: Viewport | None = None
    current: Collection[str] = field(default_factory=frozenset)


@dataclass(slots=True)
class Rendering:
    """What a rendering sends: its entity tag and media type, and its parts, alone or as a
    multipart body; no parts when the caller's copy is current."""

    etag: str
    media_type: str
    multipart: bool
    parts: AsyncIterator[Part] | None


def _instance(source: RenderSource) -> Target:
    ref = source.ref
    return Target(ref.study_uid, ref.series_uid, ref.sop_uid)


def _current(current: Collection[str], etag: str) -> bool:
    return "*" in current or etag in current


def _alone(
    data: bytes, media_type: str, source: RenderSource, location: str
) -> AsyncIterator[Part]:
    return _one(Part(PartHead(media_type, len(data), _instance(source), location), once(data)))


async def _one(part: Part) -> AsyncIterator[Part]:
    yield part


async def rendered(service: "RenderService", request: RenderRequest) -> Rendering:
    """The rendering the request names (module docstring)."""
    target = request.target
    sources = await service.sources(target)
    if target.level is Level.FRAMES:
        return await _frames(service, request, sources[0])
    single = target.level is Level.INSTANCE
    kinds = [kind(s) for s in sources]
    offered = offered_types(kinds if single else [k for k in kinds if k == "image"])
    if not offered:
        raise NotAcceptable("the target holds no object that can be rendered (no pixel data)")
    choice = choose_rendered(request.accepted, offered, multipart=True)
    params = with_media_type(request.params, choice.media_type, request.iccprofile)
    if single and not choice.multipart:
        source = sources[0]
        image = choice.media_type in IMAGE_TYPES
        if image:
            params = replace(params, frames=instance_frames(source, choice))
        etag = render_etag([source], params.key())
        if _current(request.current, etag):
            return Rendering(etag, choice.media_type, False, None)
        if image:
            data = await service.render(source, params)
        else:
            data = await service.text(source, choice.media_type)
        return Rendering(
            etag, choice.media_type, False, _alone(data, choice.media_type, source, "/rendered")
        )
    if choice.media_type not in IMAGE_TYPES:
        raise NotAcceptable("only images can be sent as multipart/related renderings")
    images = [s for s in sources if kind(s) == ObjectKind.IMAGE]
    per_instance = [replace(params, frames=instance_frames(s, choice)) for s in images]
    etag = render_etag(images, "|".join(p.key() for p in per_instance) + "|multipart")
    if _current(request.current, etag):
        return Rendering(etag, choice.media_type, True, None)
    first = await service.render(images[0], per_instance[0])
    parts = _instance_parts(service, images, per_instance, first)
    return Rendering(etag, choice.media_type, True, parts)


async def _instance_parts(
    service: "RenderService",
    images: Sequence[RenderSource],
    params: Sequence[RenderParams],
    first: bytes,
) -> AsyncIterator[Part]:
    """One rendering per image instance; each is rendered when the previous one is sent."""
    for position, (source, p) in enumerate(zip(images, params, strict=True)):
        if position == 0:
            data = first
        else:
            try:
                data = await service.render(source, p)
            except (NotAcceptable, DecodedSizeTooLarge, DecoderFailed):
                continue  # an undecodable instance is left out; the others still go
        head = PartHead(p.media_type, len(data), _instance(source), "/rendered")
        yield Part(head, once(data))


async def _frames(
    service: "RenderService", request: RenderRequest, source: RenderSource
) -> Rendering:
    """Frames of an instance: one image (or an animated GIF), or one image per frame."""
    if kind(source) != ObjectKind.IMAGE:
        raise NotFound("the instance has no pixel data, so no frames")
    numbers = request.target.frames or ()
    choice = choose_rendered(request.accepted, IMAGE_TYPES, multipart=True)
    params = with_media_type(request.params, choice.media_type, request.iccprofile)
    animated = choice.media_type == GIF and not choice.multipart
    if len(numbers) == 1 or animated:
        params = replace(params, frames=tuple(numbers[:MAX_ANIMATION_FRAMES]))
        etag = render_etag([source], params.key())
        if _current(request.current, etag):
            return Rendering(etag, choice.media_type, False, None)
        data = await service.render(source, params)
        listed = ",".join(str(n) for n in numbers)
        alone = _alone(data, choice.media_type, source, f"/frames/{listed}/rendered")
        return Rendering(etag, choice.media_type, False, alone)
    per_frame = [replace(params, frames=(n,)) for n in numbers]
    etag = render_etag([source], "|".join(p.key() for p in per_frame) + "|multipart")
    if _current(request.current, etag):
        return Rendering(etag, choice.media_type, True, None)
    first = await service.render(source, per_frame[0])

    async def parts() -> AsyncIterator[Part]:
        instance = _instance(source)
        for position, p in enumerate(per_frame):
            data = first if position == 0 else await service.render(source, p)
            head = PartHead(p.media_type, len(data), instance, f"/frames/{p.frames[0]}/rendered")
            yield Part(head, once(data))

    return Rendering(etag, choice.media_type, True, parts())


async def thumbnail(service: "RenderService", request: ThumbnailRequest) -> Rendering:
    """THUMB-02: the representative frame of the target, small, without patient information."""
    target = request.target
    sources = await service.sources(target)
    chosen = thumbnail_choice(sources)
    if chosen is None:
        raise NotAcceptable("the target holds no image to make a thumbnail of")
    source, middle = chosen
    frame = None if target.frames is None else target.frames[0]
    if frame is not None:
        frames = source.number_of_frames or 1
        if frame > frames:
            raise NotFound(f"frame {frame} does not exist: the instance has {frames} frame(s)")
    choice = choose_rendered(request.accepted, IMAGE_TYPES, multipart=False)
    params = service.thumbnail_params(
        RenderParams(media_type=choice.media_type, viewport=request.viewport), frame or middle
    )
    etag = render_etag([source], params.key() + "|thumbnail")
    if _current(request.current, etag):
        return Rendering(etag, choice.media_type, False, None)
    data = await service.render(source, params)
    return Rendering(etag, choice.media_type, False, _alone(data, choice.media_type, source, ""))

"""Rendered resources and thumbnails (PS3.18 §8.3.5, §10.4.1.1.3-4; RES-05/06, REND, THUMB).

``.../rendered`` at the study, series, instance and frames levels returns consumer images
(``image/jpeg`` default, ``image/png``, ``image/gif``), a structured report as ``text/html``
(default) or ``text/plain``, an encapsulated PDF as ``application/pdf`` (REND-01/10); anything
else is 406. Levels (REND-08):

* instance: one image (frame 1); a multi-frame instance asked for as ``image/gif`` becomes an
  animated GIF, otherwise frame 1 is sent (a documented deviation);
* frames: one image per listed frame: a single frame is a single-part image, several are
  ``multipart/related`` (or one animated GIF when ``image/gif`` is asked for as such);
* study and series: ``multipart/related`` with one rendering per image instance, in WADO-01
  order; instances without pixel data are left out.

``.../thumbnail`` at the same levels returns one small image without patient-identifying content
(no annotation, THUMB-01/02): the representative choice of :func:`app.services.render.
thumbnail_choice`, 128 px longest edge unless ``viewport=vw,vh`` says otherwise.

Parameters (§8.3.5.1): ``quality``, ``viewport``, ``window``, ``annotation``, ``iccprofile``;
malformed values are 400 naming the parameter, and so is a viewport (of a rendering or a
thumbnail) of more pixels than ``render.max_output_pixels``. An animated GIF holds the frames
that fit in ``render.max_animation_pixels`` (and at most :data:`MAX_ANIMATION_FRAMES`).
Responses carry Content-Type, Content-Length, an ETag from the instances' content hashes and
the normalised parameters, and ``Cache-Control: private`` (REND-09); ``If-None-Match`` gives
304 without rendering.

``annotation=patient`` burns the patient's identity into the pixels (REND-06): it is refused (403)
to anonymous callers (``LIGHTBOX_AUTH__ANONYMOUS_READ``), who may see images but not burned-in
PHI; an authenticated caller with read permission may ask for it.
"""

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from app.api.deps import ServicesDep, SettingsDep
from app.api.multipart_writer import (
    OutgoingPart,
    multipart_content_type,
    new_boundary,
    write_multipart,
)
from app.api.negotiation import MULTIPART_RELATED, parse_accept, parse_media_range
from app.api.targets import LevelRoute, add_level_routes, targets
from app.api.urls import instance_url, service_base
from app.auth.principal import ANONYMOUS
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
)
from app.dicom.target import Level, Target
from app.errors import (
    BadRequest,
    DecodedSizeTooLarge,
    DecoderFailed,
    Forbidden,
    NotAcceptable,
    NotFound,
)
from app.services.render import RenderService, RenderSource, kind, render_etag, thumbnail_choice

router = APIRouter(tags=["rendered"])

#: accepted spellings of rendered types (``image/jpg`` as Orthanc accepts it, URI-02)
ALIASES = {"image/jpg": "image/jpeg"}
#: animated GIFs stop at this many frames (memory and time bound); the rest are left out
MAX_ANIMATION_FRAMES = 500

_BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
_IMAGE_CONTENT = dict.fromkeys(IMAGE_TYPES, _BINARY)


@dataclass(frozen=True, slots=True)
class Choice:
    """The negotiated representation: a media type, single-part or multipart/related."""

    media_type: str
    multipart: bool = False


def _match(essence: str, offered: Sequence[str]) -> str | None:
    essence = ALIASES.get(essence, essence)
    if essence == "*/*":
        return offered[0] if offered else None
    if essence.endswith("/*"):
        prefix = essence[:-1]
        return next((o for o in offered if o.startswith(prefix)), None)
    return essence if essence in offered else None


def negotiate_rendered(
    query: Sequence[str], header: str | None, offered: Sequence[str], *, multipart: bool = True
) -> Choice:
    """Choose among ``offered`` (the default first) for the Rendered category (PS3.18 §8.7.4).

    The ``accept`` query parameter comes first (no wildcards), then the Accept header (absent:
    ``*/*``). Highest ``q`` wins, ties in the client's order. ``multipart/related; type=X``
    selects X in a multipart body when ``multipart`` allows it. A ``transfer-syntax`` parameter
    is not allowed on rendered types (REND-01): such a range is dropped. 406 when nothing fits.

    >>> negotiate_rendered([], "image/png;q=0.5, image/gif", IMAGE_TYPES)
    Choice(media_type='image/gif', multipart=False)
    >>> negotiate_rendered([], None, IMAGE_TYPES)
    Choice(media_type='image/jpeg', multipart=False)
    >>> negotiate_rendered([], 'multipart/related; type="image/png"', IMAGE_TYPES)
    Choice(media_type='image/png', multipart=True)
    """
    stages: list[list[Any]] = []
    if query:
        stages.append([r for r in parse_accept(",".join(query)) if not r.is_wildcard])
    stages.append(parse_accept("*/*" if header is None else header))
    for ranges in stages:
        for r in sorted(ranges, key=lambda r: -r.q):
            if r.q <= 0 or "transfer-syntax" in r.params:
                continue
            if r.essence == MULTIPART_RELATED:
                inner = parse_media_range(r.params.get("type", "*/*"))
                chosen = None if inner is None or not multipart else _match(inner.essence, offered)
                if chosen is not None:
                    return Choice(chosen, True)
                continue
            chosen = _match(r.essence, offered)
            if chosen is not None:
                return Choice(chosen)
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


def _header(request: Request) -> str | None:
    return ", ".join(request.headers.getlist("accept")) or None


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def build_params(
    *,
    quality: str | None,
    viewport: str | None,
    window: str | None,
    annotation: str | None,
    max_pixels: int,
) -> tuple[RenderParams, tuple[str, ...]]:
    """The rendering parameters (media type set later) and the ignored annotation keywords;
    a viewport of more than ``max_pixels`` pixels is refused (400)."""
    try:
        ignored: tuple[str, ...] = ()
        kept: tuple[str, ...] = ()
        if annotation is not None:
            kept, ignored = rendering.parse_annotation(annotation)
        params = RenderParams(
            quality=rendering.parse_quality(quality),
            viewport=None
            if viewport is None
            else rendering.parse_viewport(viewport, max_pixels=max_pixels),
            window=None if window is None else rendering.parse_window(window),
            annotation=kept,
        )
    except RenderParameterError as exc:
        raise BadRequest(str(exc)) from exc
    return params, ignored


def with_media_type(params: RenderParams, media_type: str, iccprofile: str | None) -> RenderParams:
    """``params`` for ``media_type``, with ``iccprofile`` checked against it (REND-07)."""
    try:
        icc = None if iccprofile is None else rendering.parse_iccprofile(iccprofile, media_type)
    except RenderParameterError as exc:
        raise BadRequest(str(exc)) from exc
    return replace(params, media_type=media_type, iccprofile=icc)


def _headers(etag: str, extra: dict[str, str]) -> dict[str, str]:
    return {"ETag": etag, "Cache-Control": "private", **extra}


def _location(base: str, source: RenderSource) -> str:
    ref = source.ref
    return instance_url(base, ref.study_uid, ref.series_uid, ref.sop_uid)


def instance_frames(source: RenderSource, choice: Choice) -> tuple[int, ...]:
    """REND-08: all frames (animated GIF) when GIF is asked for single-part, else frame 1."""
    frames = source.number_of_frames or 1
    if choice.media_type == GIF and not choice.multipart and frames > 1:
        return tuple(range(1, min(frames, MAX_ANIMATION_FRAMES) + 1))
    return (1,)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _multipart(
    parts: AsyncIterator[OutgoingPart], media_type: str, headers: dict[str, str]
) -> Response:
    boundary = new_boundary()
    return StreamingResponse(
        write_multipart(parts, boundary),
        media_type=multipart_content_type(media_type, boundary, transfer_syntax=None),
        headers=headers,
    )


def _part(data: bytes, media_type: str, location: str) -> OutgoingPart:
    return OutgoingPart(media_type, _once(data), location, len(data))


# --- rendered ---

AcceptParam = Annotated[
    list[str] | None,
    Query(description="media types, as in Accept but without wildcards (PS3.18 §8.3.3.1)"),
]
QualityParam = Annotated[str | None, Query(description="JPEG quality 1-100 (default 90, REND-03)")]
ViewportParam = Annotated[
    str | None,
    Query(description="vw,vh[,sx,sy,sw,sh]: output size and source rectangle (REND-04)"),
]
WindowParam = Annotated[
    str | None,
    Query(description="center,width,function (linear | linear-exact | sigmoid) (REND-05)"),
]
AnnotationParam = Annotated[
    str | None, Query(description="patient,technique: text burned into the image (REND-06)")
]
IccParam = Annotated[
    str | None, Query(description="no | yes | srgb (adobergb, rommrgb ignored) (REND-07)")
]

_RENDERED_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the rendering: an image, a multipart/related of images, SR text or a "
        "PDF (REND-01, REND-08)",
        "content": {
            **_IMAGE_CONTENT,
            'multipart/related; type="image/jpeg"': _BINARY,
            TEXT_HTML: {"schema": {"type": "string"}},
            TEXT_PLAIN: {"schema": {"type": "string"}},
            PDF: _BINARY,
        },
    },
    304: {"description": "not modified (If-None-Match matches the ETag)"},
    400: {"description": "malformed UID or rendering parameter (the message names it)"},
    404: {"description": "no such study, series, instance or frame"},
    406: {"description": "the object cannot be rendered in an accepted type"},
}


def _check_patient_annotation(request: Request, params: RenderParams) -> None:
    """REND-06: burning PHI into pixels needs an authenticated caller, never anonymous read."""
    principal = getattr(request.state, "principal", None)
    # ANONYMOUS is the configured anonymous reader; with auth switched off (SYSTEM) the operator
    # chose a closed network, and every caller may
    if "patient" in params.annotation and principal == ANONYMOUS:
        raise Forbidden("annotation=patient needs an authenticated caller (it burns in PHI)")


async def _render_target(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    accept: list[str] | None,
    params: RenderParams,
    ignored: tuple[str, ...],
    iccprofile: str | None,
    target: Target,
) -> Response:
    _check_patient_annotation(request, params)
    render = services.render
    sources = await render.sources(target)
    base = service_base(request, settings)
    extra: dict[str, str] = {}
    if ignored:
        extra["Warning"] = (
            f'299 {request.url.netloc} "The following annotation values are not supported: '
            f'{",".join(ignored)}"'
        )
    single_instance = target.level is Level.INSTANCE
    kinds = [kind(s) for s in sources]
    offered = offered_types(kinds if single_instance else [k for k in kinds if k == "image"])
    if not offered:
        raise NotAcceptable("the target holds no object that can be rendered (no pixel data)")
    choice = negotiate_rendered(accept or [], _header(request), offered, multipart=True)
    params = with_media_type(params, choice.media_type, iccprofile)
    if single_instance and not choice.multipart:
        source = sources[0]
        if choice.media_type in IMAGE_TYPES:
            params = replace(params, frames=instance_frames(source, choice))
        etag = render_etag([source], params.key())
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=_headers(etag, extra))
        if choice.media_type in IMAGE_TYPES:
            data = await render.render(source, params)
        else:
            data = await render.text(source, choice.media_type)
        extra["Content-Location"] = f"{_location(base, source)}/rendered"
        return Response(data, media_type=choice.media_type, headers=_headers(etag, extra))
    if choice.media_type not in IMAGE_TYPES:
        raise NotAcceptable("only images can be sent as multipart/related renderings")
    images = [s for s in sources if kind(s) == ObjectKind.IMAGE]
    per_instance = [replace(params, frames=instance_frames(s, choice)) for s in images]
    etag = render_etag(images, "|".join(p.key() for p in per_instance) + "|multipart")
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=_headers(etag, extra))
    first = await render.render(images[0], per_instance[0])
    return _multipart(
        _instance_parts(render, base, images, per_instance, first),
        choice.media_type,
        _headers(etag, extra),
    )


async def _instance_parts(
    render: RenderService,
    base: str,
    images: Sequence[RenderSource],
    params: Sequence[RenderParams],
    first: bytes,
) -> AsyncIterator[OutgoingPart]:
    """One rendering per image instance; each is rendered when the previous one is sent."""
    for position, (source, p) in enumerate(zip(images, params, strict=True)):
        if position == 0:
            data = first
        else:
            try:
                data = await render.render(source, p)
            except (NotAcceptable, DecodedSizeTooLarge, DecoderFailed):
                continue  # an undecodable instance is left out; the others still go
        yield _part(data, p.media_type, f"{_location(base, source)}/rendered")


@dataclass(frozen=True, slots=True)
class RenderQuery:
    """The rendering parameters of a request (§8.3.5.1), checked (400 naming a bad one)."""

    params: RenderParams
    ignored: tuple[str, ...]  # annotation keywords not supported (a Warning says so)
    iccprofile: str | None  # checked against the media type once it is chosen


async def render_query(
    services: ServicesDep,
    quality: QualityParam = None,
    viewport: ViewportParam = None,
    window: WindowParam = None,
    annotation: AnnotationParam = None,
    iccprofile: IccParam = None,
) -> RenderQuery:
    params, ignored = build_params(
        quality=quality,
        viewport=viewport,
        window=window,
        annotation=annotation,
        max_pixels=services.render.limits.pixels,
    )
    return RenderQuery(params, ignored, iccprofile)


def _rendered_endpoint(target_dependency: Any) -> Callable[..., Any]:
    async def rendered(
        request: Request,
        services: ServicesDep,
        settings: SettingsDep,
        # the parameters are checked before the UIDs (as their order in the URL has it)
        query: RenderQuery = Depends(render_query),
        target: Target = target_dependency,
        accept: AcceptParam = None,
    ) -> Response:
        return await _render_target(
            request,
            services,
            settings,
            accept,
            query.params,
            query.ignored,
            query.iccprofile,
            target,
        )

    return rendered


add_level_routes(
    router,
    "/rendered",
    [
        LevelRoute(
            Level.STUDY,
            "rendered-study",
            "Render a study's images (multipart/related, one per instance)",
        ),
        LevelRoute(
            Level.SERIES,
            "rendered-series",
            "Render a series' images (multipart/related, one per instance)",
        ),
        LevelRoute(
            Level.INSTANCE,
            "rendered-instance",
            "Render an instance (image, animated GIF, SR text or PDF)",
        ),
    ],
    _rendered_endpoint,
    responses=_RENDERED_RESPONSES,
)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
    operation_id="rendered-frames",
    summary="Render frames of an instance (one image, multipart/related, or animated GIF)",
    responses=_RENDERED_RESPONSES,
    response_class=Response,
)
async def rendered_frames(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    target: Target = targets[Level.FRAMES],
    query: RenderQuery = Depends(render_query),
    accept: AcceptParam = None,
) -> Response:
    numbers = target.frames or ()
    params, ignored, iccprofile = query.params, query.ignored, query.iccprofile
    _check_patient_annotation(request, params)
    render = services.render
    source = (await render.sources(target))[0]
    if kind(source) != ObjectKind.IMAGE:
        raise NotFound("the instance has no pixel data, so no frames")
    choice = negotiate_rendered(accept or [], _header(request), IMAGE_TYPES)
    params = with_media_type(params, choice.media_type, iccprofile)
    extra: dict[str, str] = {}
    if ignored:
        extra["Warning"] = (
            f'299 {request.url.netloc} "The following annotation values are not supported: '
            f'{",".join(ignored)}"'
        )
    base = f"{_location(service_base(request, settings), source)}/frames"
    animated = choice.media_type == GIF and not choice.multipart
    if len(numbers) == 1 or animated:
        params = replace(params, frames=tuple(numbers[:MAX_ANIMATION_FRAMES]))
        etag = render_etag([source], params.key())
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=_headers(etag, extra))
        data = await render.render(source, params)
        # the frame list as the client wrote it
        extra["Content-Location"] = f"{base}/{request.path_params['frames']}/rendered"
        return Response(data, media_type=choice.media_type, headers=_headers(etag, extra))
    per_frame = [replace(params, frames=(n,)) for n in numbers]
    etag = render_etag([source], "|".join(p.key() for p in per_frame) + "|multipart")
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=_headers(etag, extra))
    first = await render.render(source, per_frame[0])

    async def parts() -> AsyncIterator[OutgoingPart]:
        for position, p in enumerate(per_frame):
            data = first if position == 0 else await render.render(source, p)
            yield _part(data, p.media_type, f"{base}/{p.frames[0]}/rendered")

    return _multipart(parts(), choice.media_type, _headers(etag, extra))


# --- thumbnails (THUMB-01/02) ---

ThumbViewport = Annotated[
    str | None, Query(description="vw,vh: the box the thumbnail fits in (default 128,128)")
]

_THUMB_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "one small image without patient information", "content": _IMAGE_CONTENT},
    304: {"description": "not modified (If-None-Match matches the ETag)"},
    400: {"description": "malformed UID or viewport"},
    404: {"description": "no such study, series, instance or frame"},
    406: {"description": "no image to make a thumbnail of, or no accepted image type"},
}


async def _thumbnail(
    request: Request,
    services: ServicesDep,
    accept: list[str] | None,
    viewport: str | None,
    target: Target,
) -> Response:
    try:
        box = (
            None
            if viewport is None
            else rendering.parse_viewport(
                viewport, source_allowed=False, max_pixels=services.render.limits.pixels
            )
        )
    except RenderParameterError as exc:
        raise BadRequest(str(exc)) from exc
    render = services.render
    sources = await render.sources(target)
    chosen = thumbnail_choice(sources)
    if chosen is None:
        raise NotAcceptable("the target holds no image to make a thumbnail of")
    source, middle = chosen
    frame = None if target.frames is None else target.frames[0]
    if frame is not None:
        frames = source.number_of_frames or 1
        if frame > frames:
            raise NotFound(f"frame {frame} does not exist: the instance has {frames} frame(s)")
    choice = negotiate_rendered(accept or [], _header(request), IMAGE_TYPES, multipart=False)
    params = render.thumbnail_params(
        RenderParams(media_type=choice.media_type, viewport=box), frame or middle
    )
    etag = render_etag([source], params.key() + "|thumbnail")
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=_headers(etag, {}))
    data = await render.render(source, params)
    return Response(data, media_type=choice.media_type, headers=_headers(etag, {}))


def _thumbnail_endpoint(target_dependency: Any) -> Callable[..., Any]:
    async def thumbnail(
        request: Request,
        services: ServicesDep,
        target: Target = target_dependency,
        accept: AcceptParam = None,
        viewport: ThumbViewport = None,
    ) -> Response:
        return await _thumbnail(request, services, accept, viewport, target)

    return thumbnail


add_level_routes(
    router,
    "/thumbnail",
    [
        LevelRoute(
            Level.STUDY, "thumbnail-study", "A thumbnail of a study (first series, middle image)"
        ),
        LevelRoute(
            Level.SERIES,
            "thumbnail-series",
            "A thumbnail of a series (middle image by InstanceNumber)",
        ),
        LevelRoute(
            Level.INSTANCE, "thumbnail-instance", "A thumbnail of an instance (middle frame)"
        ),
        LevelRoute(
            Level.FRAMES, "thumbnail-frames", "A thumbnail of a frame (the first one listed)"
        ),
    ],
    _thumbnail_endpoint,
    responses=_THUMB_RESPONSES,
)

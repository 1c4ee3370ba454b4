"""``.../rendered`` of a study, series, instance or frames (REND-01..10, RES-05): the rendering
parameters (§8.3.5.1) read and checked, one render-service call, its answer written."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from starlette.responses import Response

from app.api.deps import ServicesDep, SettingsDep
from app.api.rendered.common import (
    BINARY,
    IMAGE_CONTENT,
    AcceptParam,
    accept_header,
    rendered_accepted,
    router,
    write_rendering,
)
from app.api.targets import LevelRoute, add_level_routes, targets
from app.api.urls import service_base
from app.api.wado.metadata import entity_tags
from app.auth.principal import ANONYMOUS
from app.dicom import render as rendering
from app.dicom.render import PDF, TEXT_HTML, TEXT_PLAIN, RenderParameterError, RenderParams
from app.dicom.target import Level, Target
from app.errors import BadRequest, Forbidden
from app.services.render import RenderRequest

__all__ = ["RenderQuery", "build_params", "render_query"]


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
            **IMAGE_CONTENT,
            'multipart/related; type="image/jpeg"': BINARY,
            TEXT_HTML: {"schema": {"type": "string"}},
            TEXT_PLAIN: {"schema": {"type": "string"}},
            PDF: BINARY,
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


async def _render(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    target: Target,
    query: RenderQuery,
    accept: list[str] | None,
) -> Response:
    _check_patient_annotation(request, query.params)
    answer = await services.render.rendered(
        RenderRequest(
            target,
            rendered_accepted(accept or [], accept_header(request)),
            query.params,
            query.iccprofile,
            entity_tags(request.headers.get("if-none-match")),
        )
    )
    extra: dict[str, str] = {}
    if query.ignored:
        extra["Warning"] = (
            f'299 {request.url.netloc} "The following annotation values are not supported: '
            f'{",".join(query.ignored)}"'
        )
    base = service_base(request, settings)
    location = None
    if target.level is Level.FRAMES:  # the frame list as the client wrote it
        location = f"{base}/{target.resource}/frames/{request.path_params['frames']}/rendered"
    return await write_rendering(answer, base, extra, location=location)


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
        return await _render(request, services, settings, target, query, accept)

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
    return await _render(request, services, settings, target, query, accept)

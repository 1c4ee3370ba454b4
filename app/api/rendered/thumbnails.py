"""``.../thumbnail`` of a study, series, instance or frame (THUMB-01/02, RES-06): one small
image without patient-identifying content, in a ``viewport=vw,vh`` box (default 128 px)."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Query, Request
from starlette.responses import Response

from app.api.deps import ServicesDep
from app.api.rendered.common import (
    IMAGE_CONTENT,
    AcceptParam,
    accept_header,
    rendered_accepted,
    router,
    write_rendering,
)
from app.api.targets import LevelRoute, add_level_routes
from app.api.wado.metadata import entity_tags
from app.dicom import render as rendering
from app.dicom.render import RenderParameterError
from app.dicom.target import Level, Target
from app.errors import BadRequest
from app.services.render import ThumbnailRequest

ThumbViewport = Annotated[
    str | None, Query(description="vw,vh: the box the thumbnail fits in (default 128,128)")
]

_THUMB_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "one small image without patient information", "content": IMAGE_CONTENT},
    304: {"description": "not modified (If-None-Match matches the ETag)"},
    400: {"description": "malformed UID or viewport"},
    404: {"description": "no such study, series, instance or frame"},
    406: {"description": "no image to make a thumbnail of, or no accepted image type"},
}


def _thumbnail_endpoint(target_dependency: Any) -> Callable[..., Any]:
    async def thumbnail(
        request: Request,
        services: ServicesDep,
        target: Target = target_dependency,
        accept: AcceptParam = None,
        viewport: ThumbViewport = None,
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
        answer = await services.render.thumbnail(
            ThumbnailRequest(
                target,
                rendered_accepted(accept or [], accept_header(request)),
                box,
                entity_tags(request.headers.get("if-none-match")),
            )
        )
        return await write_rendering(answer, "", {}, location="")

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

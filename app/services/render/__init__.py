"""Rendering (PS3.18 §8.3.5, §10.4.1.1.3-4; REND, THUMB) and WADO-URI objects (chapter 9, URI).

:mod:`.service` the :class:`RenderService` (the index's sources, reading, the rendering limiter
and cache, WADO-URI conversions); :mod:`.renderings` the rendered and thumbnail use cases, each
one call from a typed request, and the choice of media type; :mod:`.sources` what an instance
is as a rendering source; :mod:`.convert` the CPU work run in the decoder processes.
"""

from app.services.render.convert import NATIVE_SYNTAXES
from app.services.render.renderings import (
    MAX_ANIMATION_FRAMES,
    Choice,
    Rendering,
    RenderRequest,
    ThumbnailRequest,
    choose_rendered,
    instance_frames,
    offered_types,
)
from app.services.render.service import THUMBNAIL_SIZE, RenderService
from app.services.render.sources import RenderSource, kind, render_etag, thumbnail_choice

__all__ = [
    "MAX_ANIMATION_FRAMES",
    "NATIVE_SYNTAXES",
    "THUMBNAIL_SIZE",
    "Choice",
    "RenderRequest",
    "RenderService",
    "RenderSource",
    "Rendering",
    "ThumbnailRequest",
    "choose_rendered",
    "instance_frames",
    "kind",
    "offered_types",
    "render_etag",
    "thumbnail_choice",
]

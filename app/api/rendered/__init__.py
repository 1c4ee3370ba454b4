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

The parameters and ``Accept`` are read here (:mod:`.common`, :mod:`.images`,
:mod:`.thumbnails`); each request is then one render-service call
(:mod:`app.services.render.renderings`: the choice of media type, the entity tag, the
renderings), whose answer is written here, alone or as ``multipart/related``.

Parameters (§8.3.5.1): ``quality``, ``viewport``, ``window``, ``annotation``, ``iccprofile``;
malformed values are 400 naming the parameter, and so is a viewport (of a rendering or a
thumbnail) of more pixels than ``render.max_output_pixels``. An animated GIF holds the frames
that fit in ``render.max_animation_pixels`` (and at most
:data:`~app.services.render.MAX_ANIMATION_FRAMES`).
Responses carry Content-Type, Content-Length, an ETag from the instances' content hashes and
the normalised parameters, and ``Cache-Control: private`` (REND-09); ``If-None-Match`` gives
304 without rendering.

``annotation=patient`` burns the patient's identity into the pixels (REND-06): it is refused (403)
to anonymous callers (``LIGHTBOX_AUTH__ANONYMOUS_READ``), who may see images but not burned-in
PHI; an authenticated caller with read permission may ask for it.
"""

from app.api.rendered import images, thumbnails
from app.api.rendered.common import ALIASES, negotiate_rendered, rendered_accepted, router
from app.api.rendered.images import build_params

__all__ = [
    "ALIASES",
    "build_params",
    "images",
    "negotiate_rendered",
    "rendered_accepted",
    "router",
    "thumbnails",
]

"""Geometry: step 6 of the pipeline (REND-04, URI-05).

Crop to the viewport's source rectangle (sx, sy, sw, sh; negative sw/sh flip) or the WADO-URI
``region``, then scale keeping the aspect ratio to the largest size that fits (vw, vh), up or
down, but never beyond :class:`~app.dicom.render.parameters.OutputLimits` (an image sent at its
own size is not scaled).
"""

import math

from PIL import Image

from app.dicom.render.parameters import MAX_OUTPUT_PIXELS, MAX_SIDE, RenderParams


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def fitted_size(
    width: int, height: int, bounds: tuple[float, float], max_pixels: int
) -> tuple[int, int]:
    """A ``width`` x ``height`` image's size scaled, keeping its aspect ratio, to the largest
    size that fits ``bounds`` (REND-04, URI-05), up or down; when that is more than
    ``max_pixels`` pixels or :data:`MAX_SIDE` on a side (an axis left open), the largest size
    within those instead.

    >>> fitted_size(8, 8, (512, 256), 4096 * 4096)
    (256, 256)
    >>> fitted_size(8, 8, (60000, math.inf), 4096 * 4096)  # columns alone: stops at the cap
    (4096, 4096)
    """
    scale = min(bounds[0] / width, bounds[1] / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size[0] * size[1] <= max_pixels and max(size) <= MAX_SIDE:
        return size
    scale = min(math.sqrt(max_pixels / (width * height)), MAX_SIDE / max(width, height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def crop_and_scale(
    image: Image.Image, params: RenderParams, max_pixels: int = MAX_OUTPUT_PIXELS
) -> Image.Image:
    """Crop (viewport source rectangle or region; flips), then scale to fit (REND-04, URI-05),
    to no more than ``max_pixels`` pixels (:func:`fitted_size`)."""
    width, height = image.size
    flip_x = flip_y = False
    box: tuple[int, int, int, int] | None = None
    viewport = params.viewport
    if viewport is not None and viewport.has_source:
        sx = _clamp(viewport.sx or 0, 0, width - 1)
        sy = _clamp(viewport.sy or 0, 0, height - 1)
        sw = viewport.sw if viewport.sw is not None else width - sx
        sh = viewport.sh if viewport.sh is not None else height - sy
        flip_x, flip_y = sw < 0, sh < 0
        box = (sx, sy, _clamp(sx + abs(sw), sx + 1, width), _clamp(sy + abs(sh), sy + 1, height))
    elif params.region is not None:
        xmin, ymin, xmax, ymax = params.region
        left, top = math.floor(xmin * width), math.floor(ymin * height)
        right = max(left + 1, math.ceil(xmax * width))
        bottom = max(top + 1, math.ceil(ymax * height))
        box = (left, top, min(right, width), min(bottom, height))
    if box is not None and box != (0, 0, width, height):
        image = image.crop(box)
    if flip_x:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if flip_y:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    bounds: tuple[float, float] | None = None
    if viewport is not None:
        bounds = (viewport.vw, viewport.vh)
    elif params.max_size is not None:
        columns, rows = params.max_size
        bounds = (math.inf if columns is None else columns, math.inf if rows is None else rows)
    if bounds is not None:
        size = fitted_size(*image.size, bounds, max_pixels)
        if size != image.size:
            image = image.resize(size, Image.Resampling.BICUBIC)
    return image

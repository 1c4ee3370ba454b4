"""The crop/flip/scale geometry of REND-04 and URI-05 (app.dicom.render.geometry): within the
output limits whatever the bounds asked for."""

import math

import numpy as np

from app.dicom.render import MAX_SIDE, PNG, OutputLimits, RenderParams, Viewport, fitted_size
from tests.dicom.render.images import png_pixels
from tests.factories import make_dataset, to_bytes


def test_viewport_geometry() -> None:
    ds = make_dataset(rows=10, columns=20)
    raw = to_bytes(ds)
    full = png_pixels(raw, RenderParams(PNG))
    both = png_pixels(raw, RenderParams(PNG, viewport=Viewport(6, 4, 2, 3, -6, -4)))
    assert np.array_equal(both, full[3:7, 2:8][::-1, ::-1])
    # the source rectangle is clipped to the image
    clipped = png_pixels(raw, RenderParams(PNG, viewport=Viewport(18, 10, 2, 0, 100, None)))
    assert np.array_equal(clipped, full[:, 2:])
    assert png_pixels(raw, RenderParams(PNG, viewport=Viewport(10, 100))).shape == (5, 10)
    region = png_pixels(raw, RenderParams(PNG, region=(0.5, 0.0, 1.0, 0.5)))
    assert np.array_equal(region, full[:5, 10:])
    bounded = png_pixels(raw, RenderParams(PNG, max_size=(None, 5)))
    assert bounded.shape == (5, 10)


def test_scaling_never_goes_beyond_the_limit() -> None:
    """An 8 x 8 image is enlarged to fit the viewport (PS3.18 §8.3.5.1.3), up to the limit and
    never beyond it, whatever the bounds: an axis left open (WADO-URI columns alone) or a
    viewport that was not checked stops at the largest size within the limit."""
    raw = to_bytes(make_dataset(rows=8, columns=8))
    limits = OutputLimits(pixels=1000)
    assert png_pixels(raw, RenderParams(PNG, viewport=Viewport(30, 20)), limits).shape == (20, 20)
    assert png_pixels(raw, RenderParams(PNG, viewport=Viewport(500, 500)), limits).shape == (31, 31)
    assert png_pixels(raw, RenderParams(PNG, max_size=(60000, None)), limits).shape == (31, 31)
    wide = to_bytes(make_dataset(rows=4, columns=16))
    shape = png_pixels(wide, RenderParams(PNG, max_size=(None, 5000)), limits).shape
    assert shape == (15, 63)
    assert shape[0] * shape[1] <= 1000
    # a region enlarged by rows/columns is bounded the same way
    region = RenderParams(PNG, region=(0.0, 0.0, 0.5, 1.0), max_size=(None, 60000))
    assert png_pixels(raw, region, limits).shape == (44, 22)
    # at its own size an image is not scaled, whatever the limit
    assert png_pixels(wide, RenderParams(PNG), OutputLimits(pixels=10)).shape == (4, 16)


def test_fitted_size_keeps_sides_within_jpeg_and_gif_limits() -> None:
    assert fitted_size(1, 60000, (2, math.inf), 1 << 40) == (1, MAX_SIDE)
    assert fitted_size(8, 8, (512, 256), 4096 * 4096) == (256, 256)
    assert fitted_size(1000, 10, (100, 100), 4096 * 4096) == (100, 1)

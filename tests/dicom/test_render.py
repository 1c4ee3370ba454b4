"""The pure rendering pipeline (app.dicom.render) on generated datasets: the LUT branches of
REND-02 that the corpus does not exercise, and the crop/flip/scale geometry of REND-04."""

import io
import math

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset

from app.dicom.render import (
    GIF,
    MAX_SIDE,
    PNG,
    OutputLimits,
    RenderParameterError,
    RenderParams,
    Viewport,
    Window,
    check_output_size,
    fitted_size,
    grayscale,
    parse_quality,
    parse_viewport,
    render,
)
from tests.factories import make_dataset, to_bytes


def _png(raw: bytes, params: RenderParams, limits: OutputLimits | None = None) -> np.ndarray:
    data = render(raw, params) if limits is None else render(raw, params, None, limits)
    return np.asarray(Image.open(io.BytesIO(data)))


def test_voi_lut_sequence() -> None:
    """No window in the request or the dataset: the VOI LUT Sequence maps the values."""
    ds = make_dataset(rows=4, columns=8)
    item = Dataset()
    first, entries, bits = 10, 16, 12
    item.LUTDescriptor = [entries, first, bits]
    table = np.linspace(0, 4095, entries).astype(np.uint16)
    item.LUTData = table.astype("<u2").tobytes()
    ds.VOILUTSequence = [item]
    x = ds.pixel_array.astype(np.int64)
    mapped = table[np.clip(x - first, 0, entries - 1)].astype(np.float64)
    expected = np.rint(mapped * 255 / 4095).astype(np.uint8)
    assert np.array_equal(_png(to_bytes(ds), RenderParams(PNG)), expected)


def test_modality_lut_sequence_then_min_max() -> None:
    """A Modality LUT Sequence replaces rescale; without VOI the min/max of its output is used."""
    ds = make_dataset(rows=4, columns=8)
    item = Dataset()
    item.LUTDescriptor = [32, 0, 16]
    item.ModalityLUTType = "HU"
    lut = (np.arange(32) ** 2).astype(np.uint16)
    item.LUTData = lut.astype("<u2").tobytes()
    ds.ModalityLUTSequence = [item]
    values = lut[np.clip(ds.pixel_array.astype(np.int64), 0, 31)].astype(np.float64)
    expected = np.rint((values - values.min()) / (values.max() - values.min()) * 255)
    assert np.array_equal(_png(to_bytes(ds), RenderParams(PNG)), expected.astype(np.uint8))


def test_lookup_table_and_float_paths_agree() -> None:
    """Integer frames use a lookup table; the result equals the per-pixel computation."""
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -20
    rng = np.random.default_rng(7)
    pixels = rng.integers(-500, 3000, (32, 32)).astype(np.int16)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 300, 700, "SIGMOID"
    via_table = grayscale(pixels, ds, None)
    via_floats = grayscale(pixels.astype(np.float64), ds, None)
    assert np.array_equal(via_table, via_floats)


def test_viewport_geometry() -> None:
    ds = make_dataset(rows=10, columns=20)
    raw = to_bytes(ds)
    full = _png(raw, RenderParams(PNG))
    both = _png(raw, RenderParams(PNG, viewport=Viewport(6, 4, 2, 3, -6, -4)))
    assert np.array_equal(both, full[3:7, 2:8][::-1, ::-1])
    # the source rectangle is clipped to the image
    clipped = _png(raw, RenderParams(PNG, viewport=Viewport(18, 10, 2, 0, 100, None)))
    assert np.array_equal(clipped, full[:, 2:])
    assert _png(raw, RenderParams(PNG, viewport=Viewport(10, 100))).shape == (5, 10)
    region = _png(raw, RenderParams(PNG, region=(0.5, 0.0, 1.0, 0.5)))
    assert np.array_equal(region, full[:5, 10:])
    bounded = _png(raw, RenderParams(PNG, max_size=(None, 5)))
    assert bounded.shape == (5, 10)


@pytest.mark.parametrize("value", ["1,2,3", "1,2,3,4,5,6,7", "1.5,2", "2,2,,,0,1", ""])
def test_viewport_refusals(value: str) -> None:
    with pytest.raises(RenderParameterError, match="viewport"):
        parse_viewport(value)


@pytest.mark.parametrize(
    "value", ["²,2", "2,٣", "9" * 5000 + ",2", "2,2,,,,²", "2,2," + "9" * 19 + ",0,1,1"]
)
def test_viewport_numbers_int_cannot_take_are_refusals(value: str) -> None:
    """Digits ``str.isdigit`` admits but ``int`` does not (or not quickly) are a 400, never a
    ValueError that would be a 500."""
    with pytest.raises(RenderParameterError, match="viewport"):
        parse_viewport(value)


@pytest.mark.parametrize("value", ["²", "٣", "9" * 5000])
def test_quality_numbers_int_cannot_take_are_refusals(value: str) -> None:
    with pytest.raises(RenderParameterError, match="quality"):
        parse_quality(value)


def test_requested_output_sizes_beyond_the_limits_are_refused() -> None:
    """REND-04 / URI-05: a viewport (or rows x columns) of more pixels than the limit, or a side
    longer than JPEG and GIF can store, is a 400 naming the parameter and the limit."""
    assert parse_viewport("4096,4096") == Viewport(4096, 4096)
    with pytest.raises(RenderParameterError, match=r"viewport: 65500 x 65500 .*16777216"):
        parse_viewport("65500,65500")
    with pytest.raises(RenderParameterError, match="viewport: 101 x 100 is 10100 pixels"):
        parse_viewport("101,100", max_pixels=10_000)
    assert parse_viewport("100,100", max_pixels=10_000) == Viewport(100, 100)
    with pytest.raises(RenderParameterError, match=f"viewport: 70000 pixels .* {MAX_SIDE}"):
        parse_viewport("70000,1")
    with pytest.raises(RenderParameterError, match="viewport"):
        parse_viewport("300,300", source_allowed=False, max_pixels=256 * 256)
    check_output_size("rows and columns", 100, 100, 10_000)
    with pytest.raises(RenderParameterError, match="rows and columns: 100 x 101"):
        check_output_size("rows and columns", 100, 101, 10_000)
    with pytest.raises(RenderParameterError, match="invalid rows: 20000 is 20000 pixels"):
        check_output_size("rows", None, 20_000, 10_000)


def test_scaling_never_goes_beyond_the_limit() -> None:
    """An 8 x 8 image is enlarged to fit the viewport (PS3.18 §8.3.5.1.3), up to the limit and
    never beyond it, whatever the bounds: an axis left open (WADO-URI columns alone) or a
    viewport that was not checked stops at the largest size within the limit."""
    raw = to_bytes(make_dataset(rows=8, columns=8))
    limits = OutputLimits(pixels=1000)
    assert _png(raw, RenderParams(PNG, viewport=Viewport(30, 20)), limits).shape == (20, 20)
    assert _png(raw, RenderParams(PNG, viewport=Viewport(500, 500)), limits).shape == (31, 31)
    assert _png(raw, RenderParams(PNG, max_size=(60000, None)), limits).shape == (31, 31)
    wide = to_bytes(make_dataset(rows=4, columns=16))
    shape = _png(wide, RenderParams(PNG, max_size=(None, 5000)), limits).shape
    assert shape == (15, 63)
    assert shape[0] * shape[1] <= 1000
    # a region enlarged by rows/columns is bounded the same way
    region = RenderParams(PNG, region=(0.0, 0.0, 0.5, 1.0), max_size=(None, 60000))
    assert _png(raw, region, limits).shape == (44, 22)
    # at its own size an image is not scaled, whatever the limit
    assert _png(wide, RenderParams(PNG), OutputLimits(pixels=10)).shape == (4, 16)


def test_fitted_size_keeps_sides_within_jpeg_and_gif_limits() -> None:
    assert fitted_size(1, 60000, (2, math.inf), 1 << 40) == (1, MAX_SIDE)
    assert fitted_size(8, 8, (512, 256), 4096 * 4096) == (256, 256)
    assert fitted_size(1000, 10, (100, 100), 4096 * 4096) == (100, 1)


def test_animation_stops_at_its_pixel_budget() -> None:
    """Frames x pixels of an animated GIF are bounded: the frames beyond the budget are left
    out (and never decoded)."""
    ds = make_dataset(rows=16, columns=32, frames=4)
    raw = to_bytes(ds)
    params = RenderParams(GIF, window=Window(1024, 2048), frames=(1, 2, 3, 4))
    frame = 16 * 32

    def frames(limits: OutputLimits) -> int:
        with Image.open(io.BytesIO(render(raw, params, None, limits))) as image:
            return int(getattr(image, "n_frames", 1))

    assert frames(OutputLimits()) == 4
    assert frames(OutputLimits(animation_pixels=2 * frame + 1)) == 2
    assert frames(OutputLimits(animation_pixels=1)) == 1  # one frame always goes
    scaled = RenderParams(
        GIF, window=Window(1024, 2048), frames=(1, 2, 3, 4), viewport=Viewport(64, 32)
    )
    data = render(raw, scaled, None, OutputLimits(animation_pixels=3 * 64 * 32))
    with Image.open(io.BytesIO(data)) as image:
        assert (image.size, getattr(image, "n_frames", 1)) == ((64, 32), 3)

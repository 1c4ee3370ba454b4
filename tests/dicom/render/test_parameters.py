"""Parsing and checking rendering parameters (app.dicom.render.parameters): malformed values and
output sizes beyond the limits are 400s naming the parameter (REND-03/04, URI-05)."""

import pytest

from app.dicom.render import (
    MAX_SIDE,
    RenderParameterError,
    Viewport,
    check_output_size,
    parse_quality,
    parse_viewport,
)


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

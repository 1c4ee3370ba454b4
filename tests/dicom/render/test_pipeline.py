"""The rendering pipeline end to end (app.dicom.render.pipeline): an animated GIF's frames are
bounded together (REND-08)."""

import io

from PIL import Image

from app.dicom.render import GIF, OutputLimits, RenderParams, Viewport, Window, render
from tests.factories import make_dataset, to_bytes


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

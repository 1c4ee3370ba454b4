"""What the render tests look at: the pixels of a rendering, decoded back."""

import io

import numpy as np
from PIL import Image

from app.dicom.render import OutputLimits, RenderParams, render


def png_pixels(raw: bytes, params: RenderParams, limits: OutputLimits | None = None) -> np.ndarray:
    """The pixels of ``raw`` rendered with ``params`` (PNG, so exactly what was rendered)."""
    data = render(raw, params) if limits is None else render(raw, params, None, limits)
    return np.asarray(Image.open(io.BytesIO(data)))

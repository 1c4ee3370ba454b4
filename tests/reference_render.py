"""The reference rendering (PS3.3 C.11.1, C.11.2.1.2.1, C.11.2.1.3.1-2) the rendered-resource
tests compare with: pydicom + numpy, written independently of :mod:`app.dicom.render`."""

import io
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_modality_lut

Array = npt.NDArray[Any]


def voi(x: Array, center: float, width: float, function: str) -> Array:
    if function == "linear":
        y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255
        y[x <= center - 0.5 - (width - 1) / 2] = 0
        y[x > center - 0.5 + (width - 1) / 2] = 255
    elif function == "linear-exact":
        y = ((x - center) / width + 0.5) * 255
        y[x <= center - width / 2] = 0
        y[x > center + width / 2] = 255
    else:
        y = 255 / (1 + np.exp(-4 * (x - center) / width))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def reference_gray(
    ds: Dataset, frame: int = 0, window: tuple[float, float, str] | None = None
) -> Array:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = ds.pixel_array[frame] if frames > 1 else ds.pixel_array
    x = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    if window is None and "WindowCenter" in ds:
        center, width = ds.WindowCenter, ds.WindowWidth
        c = float(center[0] if isinstance(center, MultiValue) else center)
        w = float(width[0] if isinstance(width, MultiValue) else width)
        window = (c, w, str(ds.get("VOILUTFunction", "LINEAR")).lower().replace("_", "-"))
    if window is not None:
        out = voi(x, *window)
    else:
        out = np.clip(np.rint((x - x.min()) / (x.max() - x.min()) * 255), 0, 255).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        out = 255 - out
    return out


def decoded(response: httpx.Response) -> Array:
    return np.asarray(Image.open(io.BytesIO(response.content)))


def assert_png(response: httpx.Response, expected: Array) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = decoded(response)
    assert image.shape == expected.shape
    assert np.array_equal(image, expected)


def assert_jpeg(response: httpx.Response, expected: Array, tolerance: float = 4.0) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:2] == b"\xff\xd8"
    image = decoded(response)
    assert image.shape == expected.shape
    assert float(np.abs(image.astype(float) - expected.astype(float)).mean()) < tolerance

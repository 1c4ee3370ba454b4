"""Pixels to 8 bits: steps 1-5 of the pipeline (REND-02, PS3.4 Annex N.2) for one frame.

The frame is decoded (pydicom; compressed syntaxes through pylibjpeg / pyjpegls, YBR converted
to RGB), then a grayscale frame goes through the Modality LUT (PS3.3 C.11.1), VOI (PS3.3
C.11.2) and MONOCHROME1 inversion, a colour one through its palette or down to 8 bits.
"""

from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi
from pydicom.pixels.utils import pixel_array

from app.dicom.render.dataset import frame_attributes
from app.dicom.render.parameters import VOI_FUNCTIONS, RenderParameterError, Window, make_window

Array = npt.NDArray[Any]


def _frame(ds: Dataset, number: int) -> Array:
    """Frame ``number`` (1-based) as decoded by pydicom: YBR already converted to RGB."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= number <= frames:
        raise RenderParameterError(
            f"invalid frame number {number}: the instance has {frames} frame(s)"
        )
    return np.asarray(pixel_array(ds, index=number - 1))


def _first(value: Any) -> float:
    if isinstance(value, list | tuple) or (
        hasattr(value, "__len__") and not isinstance(value, str)
    ):
        return float(value[0])
    return float(value)


def dataset_window(ds: Dataset) -> Window | None:
    """The first WindowCenter/WindowWidth of the dataset with its VOILUTFunction, if usable."""
    center = ds.get("WindowCenter")
    width = ds.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function not in VOI_FUNCTIONS.values():
        function = "LINEAR"
    try:
        # a stored window obeys the width rule of an asked one; a RenderParameterError (a
        # ValueError) here means the dataset's window is not usable
        return make_window(_first(center), _first(width), function, "window")
    except (TypeError, ValueError, IndexError):
        return None


def apply_window(values: Array, window: Window) -> Array:
    """Map modality values to 0..255 (float) with a VOI window (PS3.3 C.11.2.1.2.1, C.11.2.1.3).

    >>> apply_window(np.array([0.0, 40.0, 1000.0]), Window(40, 400, "LINEAR")).round(2).tolist()
    [102.26, 127.82, 255.0]
    >>> apply_window(np.array([40.0]), Window(40, 400, "SIGMOID")).tolist()
    [127.5]
    """
    x = values.astype(np.float64, copy=False)
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if window.function == "LINEAR_EXACT":
        y = ((x - c) / w + 0.5) * 255.0
        y = np.where(x <= c - w / 2, 0.0, y)
        return np.where(x > c + w / 2, 255.0, y)
    # LINEAR
    low = c - 0.5 - (w - 1) / 2
    high = c - 0.5 + (w - 1) / 2
    if w == 1:
        return np.where(x <= low, 0.0, 255.0)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    y = np.where(x <= low, 0.0, y)
    return np.where(x > high, 255.0, y)


def _to_uint8(values: Array) -> Array:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _voi(values: Array, ds: Dataset, window: Window | None, present: Array | None) -> Array:
    """VOI of modality values -> uint8; ``present`` masks the values the min/max fallback sees."""
    if window is not None:
        out = apply_window(values, window)
    elif "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        item = ds.VOILUTSequence[0]
        lut_bits = int(item.LUTDescriptor[2])
        mapped = np.asarray(apply_voi(values.astype(np.int64), ds, index=0), dtype=np.float64)
        out = mapped * (255.0 / float((1 << lut_bits) - 1))
    else:
        seen = values if present is None else values[present]
        low, high = float(seen.min()), float(seen.max())
        out = np.zeros_like(values) if high <= low else (values - low) / (high - low) * 255.0
    return _to_uint8(out)


#: integer frames whose value range is at most this wide are mapped through a lookup table
_LUT_SPAN: Final = 1 << 17


def grayscale(pixels: Array, ds: Dataset, window: Window | None) -> Array:
    """Modality LUT, VOI and MONOCHROME1 inversion of one grayscale frame -> uint8 (REND-02).

    Integer frames go through a lookup table built over their value range (the same formulas
    on each distinct value, so the same result), which is several times faster than mapping
    every pixel in floating point.

    >>> ds = Dataset(); ds.PhotometricInterpretation = "MONOCHROME2"
    >>> grayscale(np.array([[0, 50, 100]], dtype=np.uint16), ds, None).tolist()
    [[0, 128, 255]]
    """
    chosen = window or dataset_window(ds)
    low = high = 0
    if pixels.dtype.kind in "iu" and pixels.size:
        low, high = int(pixels.min()), int(pixels.max())
    if pixels.dtype.kind in "iu" and pixels.size and high - low < _LUT_SPAN:
        domain = np.arange(low, high + 1, dtype=np.int64).astype(pixels.dtype)
        values = np.asarray(apply_modality_lut(domain, ds), dtype=np.float64)
        indices = pixels.astype(np.intp) - low
        present = np.bincount(indices.ravel(), minlength=len(domain)) > 0
        result = _voi(values, ds, chosen, present)[indices]
    else:
        values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
        result = _voi(values, ds, chosen, None)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        result = 255 - result
    return result


def colour(pixels: Array, ds: Dataset) -> Array:
    """An RGB uint8 array of a colour frame: palette through its LUTs, RGB/YBR scaled to 8 bits."""
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        rgb = np.asarray(apply_color_lut(pixels, ds))
        if rgb.dtype != np.uint8:
            return (rgb.astype(np.uint32) >> 8).astype(np.uint8)
        return rgb
    bits = int(ds.get("BitsStored", 8) or 8)
    if pixels.dtype == np.uint8 or bits <= 8:
        return pixels.astype(np.uint8, copy=False)
    return (pixels.astype(np.uint32) >> (bits - 8)).astype(np.uint8)


def to_image(ds: Dataset, number: int, window: Window | None) -> Image.Image:
    """Steps 1-5 of the pipeline for one frame: an ``L`` or ``RGB`` Pillow image."""
    pixels = _frame(ds, number)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if samples == 1 and photometric != "PALETTE COLOR":
        frame_ds = frame_attributes(ds, number)
        return Image.fromarray(grayscale(pixels, frame_ds, window), mode="L")
    return Image.fromarray(colour(pixels, ds), mode="RGB")

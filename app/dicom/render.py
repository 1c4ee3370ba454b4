"""Rendering: DICOM pixels -> an 8-bit consumer image (PS3.18 §8.3.5.1, PS3.4 Annex N.2).

Pure and synchronous (numpy + Pillow); callers run :func:`render` off the event loop.

The pipeline (REND-02), in order:

1. decode the frame (pydicom; compressed syntaxes through pylibjpeg / pyjpegls), once its decoded
   size is known to be within :class:`~app.dicom.decoding.DecodeLimits` (issue 19);
2. Modality LUT: RescaleSlope/RescaleIntercept or the Modality LUT Sequence (PS3.3 C.11.1);
3. VOI: the ``window`` parameter, else the first WindowCenter/WindowWidth with VOILUTFunction,
   else the VOI LUT Sequence, else the pixel min/max; the three VOI functions LINEAR,
   LINEAR_EXACT and SIGMOID follow PS3.3 C.11.2.1.2.1, C.11.2.1.3.1 and C.11.2.1.3.2, mapping to
   0..255;
4. MONOCHROME1 is inverted;
5. YBR is converted to RGB (by the decoder), PALETTE COLOR through its lookup tables;
6. crop (``viewport`` sx, sy, sw, sh or the WADO-URI ``region``; negative sw/sh flip), then
   scale keeping the aspect ratio to the largest size that fits (vw, vh), up or down, but never
   beyond :class:`OutputLimits` (an image sent at its own size is not scaled);
7. annotations are burned in last;
8. encoding: JPEG (baseline 8-bit Huffman, ``quality``), PNG, GIF (animated for several frames).

Parameters are parsed here too (:func:`parse_quality`, :func:`parse_viewport`,
:func:`parse_window`, :func:`parse_annotation`, :func:`parse_iccprofile`); every malformed value
raises :class:`RenderParameterError` whose message names the parameter (400). So does an output
size beyond the limits (:func:`check_output_size`): PS3.18 §8.3.5.1.3 makes the viewport the
size of the returned image, and asks for 400 when viewport dimensions are not supported.
"""

import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageCms, ImageDraw, ImageFont
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from app.dicom.decoding import DEFAULT_LIMITS as DEFAULT_DECODE_LIMITS
from app.dicom.decoding import DecodeLimits, PixelShape

__all__ = [
    "GIF",
    "IMAGE_TYPES",
    "JPEG",
    "MAX_SIDE",
    "PDF",
    "PNG",
    "TEXT_HTML",
    "TEXT_PLAIN",
    "ObjectKind",
    "OutputLimits",
    "RenderParameterError",
    "RenderParams",
    "Viewport",
    "Window",
    "check_output_size",
    "check_renderable",
    "encapsulated_pdf",
    "fitted_size",
    "frame_attributes",
    "is_digits",
    "kind_of",
    "parse_annotation",
    "parse_iccprofile",
    "parse_number",
    "parse_quality",
    "parse_region",
    "parse_viewport",
    "parse_window",
    "render",
    "render_text",
    "single_frame_dataset",
]

JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
GIF: Final = "image/gif"
TEXT_HTML: Final = "text/html"
TEXT_PLAIN: Final = "text/plain"
PDF: Final = "application/pdf"
#: image types we produce, the default first (REND-01)
IMAGE_TYPES: Final = (JPEG, PNG, GIF)

DEFAULT_QUALITY: Final = 90
#: the widest or tallest image we make: JPEG and GIF keep each side in 16 bits
MAX_SIDE: Final = 65535
#: default bounds of :class:`OutputLimits`: 4096 x 4096 per image, 128 Mi pixels per animation
MAX_OUTPUT_PIXELS: Final = 4096 * 4096
MAX_ANIMATION_PIXELS: Final = 128 * 1024 * 1024
#: VOI LUT Function values (PS3.3 C.11.2.1.3) by their ``window`` parameter names (REND-05)
VOI_FUNCTIONS: Final = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}
#: annotation keywords of PS3.18 §8.3.5.1.1 we burn in; other valid ones are ignored (REND-06)
ANNOTATIONS: Final = ("patient", "technique")
_KNOWN_ANNOTATIONS: Final = frozenset(ANNOTATIONS)
ICC_VALUES: Final = frozenset({"no", "yes", "srgb", "adobergb", "rommrgb"})

_SR_PREFIX: Final = "1.2.840.10008.5.1.4.1.1.88."
_ENCAPSULATED_PDF: Final = "1.2.840.10008.5.1.4.1.1.104.1"


class RenderParameterError(ValueError):
    """A rendering parameter is malformed; the message names it (the caller answers 400)."""


@dataclass(frozen=True, slots=True)
class OutputLimits:
    """How large rendered output may be: what bounds a rendering's memory and time.

    ``pixels`` bounds each image the scale step makes (a viewport, WADO-URI rows/columns, a
    thumbnail box): a request asking for more is refused (:func:`check_output_size`), and an
    axis left open (WADO-URI ``columns`` without ``rows``) stops at it (:func:`fitted_size`).
    ``animation_pixels`` bounds the frames of one animated GIF together: the frames beyond it
    are left out. An image sent at its own size is bounded by what could be decoded, not here.
    """

    pixels: int = MAX_OUTPUT_PIXELS
    animation_pixels: int = MAX_ANIMATION_PIXELS


#: the limits when none are configured
DEFAULT_LIMITS: Final = OutputLimits()


@dataclass(frozen=True, slots=True)
class Window:
    """A VOI window: center, width and VOI LUT Function (LINEAR, LINEAR_EXACT, SIGMOID)."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True, slots=True)
class Viewport:
    """``viewport=vw,vh[,sx,sy,sw,sh]`` (PS3.18 §8.3.5.1.3); None for elided source values."""

    vw: int
    vh: int
    sx: int | None = None
    sy: int | None = None
    sw: int | None = None
    sh: int | None = None

    @property
    def has_source(self) -> bool:
        return any(v is not None for v in (self.sx, self.sy, self.sw, self.sh))


@dataclass(frozen=True, slots=True)
class RenderParams:
    """Everything that decides the rendered bytes, normalised (see :meth:`key`).

    ``region`` is the WADO-URI normalised crop (xmin, ymin, xmax, ymax); ``max_size`` the WADO-URI
    (columns, rows) bounds, either may be None. ``frames`` are 1-based; several give an animation
    (GIF) or one image each (the caller's choice). ``annotation`` holds burned-in keywords.
    """

    media_type: str = JPEG
    quality: int = DEFAULT_QUALITY
    viewport: Viewport | None = None
    window: Window | None = None
    annotation: tuple[str, ...] = ()
    iccprofile: str | None = None
    region: tuple[float, float, float, float] | None = None
    max_size: tuple[int | None, int | None] | None = None
    frames: tuple[int, ...] = (1,)

    def key(self) -> str:
        """A canonical text of the parameters (an ETag and cache key ingredient, REND-09).

        >>> RenderParams(PNG, quality=50).key() == RenderParams(PNG, quality=70).key()
        True
        >>> RenderParams(JPEG, quality=50).key() == RenderParams(JPEG, quality=70).key()
        False
        """
        quality = self.quality if self.media_type == JPEG else 0  # REND-03: only lossy types
        return repr(
            (
                self.media_type,
                quality,
                self.viewport,
                self.window,
                self.annotation,
                self.iccprofile,
                self.region,
                self.max_size,
                self.frames,
            )
        )


# --- parameter parsing ---


def parse_quality(value: str | None, name: str = "quality") -> int:
    """``quality`` (REND-03): an integer 1..100; None (absent) gives the default 90.

    >>> parse_quality(None), parse_quality("75")
    (90, 75)
    >>> parse_quality("0")
    Traceback (most recent call last):
    ...
    app.dicom.render.RenderParameterError: invalid quality '0': expected an integer from 1 to 100
    """
    if value is None:
        return DEFAULT_QUALITY
    text = value.strip()
    if not is_digits(text) or not 1 <= int(text) <= 100:
        raise RenderParameterError(f"invalid {name} {value!r}: expected an integer from 1 to 100")
    return int(text)


def is_digits(text: str) -> bool:
    """Whether ``text`` is a decimal integer ``int()`` takes: ASCII digits only (``"²"`` is a
    digit to :meth:`str.isdigit`, not to ``int``), and at most 18 of them (``int`` refuses
    thousands, and no size or offset needs more).

    >>> is_digits("0512"), is_digits("²"), is_digits("9" * 19), is_digits("")
    (True, False, False, False)
    """
    return text.isascii() and text.isdigit() and len(text) <= 18


def _int(text: str, name: str, *, positive: bool = False) -> int:
    text = text.strip()
    body = text[1:] if text[:1] in "+-" else text
    if not is_digits(body):
        raise RenderParameterError(
            f"invalid viewport: {name} {text[:24]!r} is not an integer of at most 18 digits"
        )
    number = int(text)
    if positive and number <= 0:
        raise RenderParameterError(f"invalid viewport: {name} must be a positive integer")
    return number


def parse_viewport(
    value: str, *, source_allowed: bool = True, max_pixels: int = MAX_OUTPUT_PIXELS
) -> Viewport:
    """``viewport=vw,vh[,sx,sy,sw,sh]`` (REND-04); elided values keep their commas.

    ``source_allowed=False`` (thumbnails, presentation states) refuses anything beyond vw,vh;
    vw x vh above ``max_pixels`` is refused too (:func:`check_output_size`).

    >>> parse_viewport("512,512,,,256,-256")
    Viewport(vw=512, vh=512, sx=None, sy=None, sw=256, sh=-256)
    >>> parse_viewport("0,10")
    Traceback (most recent call last):
    ...
    app.dicom.render.RenderParameterError: invalid viewport: vw must be a positive integer
    """
    pieces = value.split(",")
    if len(pieces) not in (2, 6):
        raise RenderParameterError(
            f"invalid viewport {value!r}: expected vw,vh or vw,vh,sx,sy,sw,sh"
        )
    if len(pieces) == 6 and not source_allowed:
        raise RenderParameterError("invalid viewport: only vw,vh may be given for this resource")
    vw = _int(pieces[0], "vw", positive=True)
    vh = _int(pieces[1], "vh", positive=True)
    check_output_size("viewport", vw, vh, max_pixels)
    rest: list[int | None] = []
    for name, text in zip(("sx", "sy", "sw", "sh"), pieces[2:], strict=False):
        rest.append(None if not text.strip() else _int(text, name))
    sx, sy, sw, sh = (rest + [None] * 4)[:4]
    if (sx is not None and sx < 0) or (sy is not None and sy < 0):
        raise RenderParameterError("invalid viewport: sx and sy must not be negative")
    if sw == 0 or sh == 0:
        raise RenderParameterError("invalid viewport: sw and sh must not be zero")
    return Viewport(vw, vh, sx, sy, sw, sh)


def check_output_size(
    parameter: str, width: int | None, height: int | None, max_pixels: int
) -> None:
    """Refuse an asked output size (either side may be open) beyond the limits, naming
    ``parameter``: a side above :data:`MAX_SIDE`, or more than ``max_pixels`` pixels.

    >>> check_output_size("viewport", 4096, 4096, 4096 * 4096)
    >>> check_output_size("viewport", 65500, 65500, 4096 * 4096)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    app.dicom.render.RenderParameterError: invalid viewport: 65500 x 65500 is 4290250000 pixels, ...
    >>> check_output_size("columns", 70000, None, 4096 * 4096)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    app.dicom.render.RenderParameterError: invalid columns: 70000 pixels is more than 65535, ...
    """
    for side in (width, height):
        if side is not None and side > MAX_SIDE:
            raise RenderParameterError(
                f"invalid {parameter}: {side} pixels is more than {MAX_SIDE}, the largest width "
                "or height of a rendered image"
            )
    pixels = (width or 1) * (height or 1)
    if pixels > max_pixels:
        size = " x ".join(str(side) for side in (width, height) if side is not None)
        raise RenderParameterError(
            f"invalid {parameter}: {size} is {pixels} pixels, more than this server renders "
            f"({max_pixels} pixels per image)"
        )


def parse_number(text: str, what: str) -> float:
    """A finite decimal number, or :class:`RenderParameterError` naming ``what``."""
    try:
        number = float(text.strip())
    except ValueError:
        raise RenderParameterError(f"invalid {what} {text.strip()!r}: not a number") from None
    if not math.isfinite(number):
        raise RenderParameterError(f"invalid {what} {text.strip()!r}: not a finite number")
    return number


def parse_window(value: str) -> Window:
    """``window=center,width,function`` (REND-05): all three required.

    >>> parse_window("40,400,linear")
    Window(center=40.0, width=400.0, function='LINEAR')
    >>> parse_window("40,0,sigmoid")
    Traceback (most recent call last):
    ...
    app.dicom.render.RenderParameterError: invalid window: width must be greater than 0
    """
    pieces = value.split(",")
    if len(pieces) != 3:
        raise RenderParameterError(
            f"invalid window {value!r}: expected center,width,function with function one of "
            "linear, linear-exact, sigmoid"
        )
    center = parse_number(pieces[0], "window center")
    width = parse_number(pieces[1], "window width")
    function = VOI_FUNCTIONS.get(pieces[2].strip().lower())
    if function is None:
        raise RenderParameterError(
            f"invalid window function {pieces[2].strip()!r}: expected linear, linear-exact or "
            "sigmoid"
        )
    return make_window(center, width, function, "window")


def make_window(center: float, width: float, function: str, name: str) -> Window:
    """A checked :class:`Window`: width > 0, and >= 1 for LINEAR (PS3.3 C.11.2.1.2.1)."""
    if width <= 0:
        raise RenderParameterError(f"invalid {name}: width must be greater than 0")
    if function == "LINEAR" and width < 1:
        raise RenderParameterError(f"invalid {name}: a linear window's width must be at least 1")
    return Window(center, width, function)


def parse_annotation(value: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``annotation=patient,technique`` (REND-06): (burned-in keywords, ignored ones).

    Keywords are words of letters, digits, ``-`` and ``_``; an empty or non-keyword value raises.

    >>> parse_annotation("technique,patient,overlay")
    (('patient', 'technique'), ('overlay',))
    >>> parse_annotation("")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    app.dicom.render.RenderParameterError: invalid annotation '': expected keywords such as ...
    """
    words = [w.strip().lower() for w in value.split(",")]
    if not words or any(not w or not w.replace("-", "").replace("_", "").isalnum() for w in words):
        raise RenderParameterError(
            f"invalid annotation {value!r}: expected keywords such as patient,technique"
        )
    kept = tuple(k for k in ANNOTATIONS if k in words)
    ignored = tuple(dict.fromkeys(w for w in words if w not in _KNOWN_ANNOTATIONS))
    return kept, ignored


def parse_iccprofile(value: str, media_type: str) -> str | None:
    """``iccprofile`` (REND-07): no | yes | srgb | adobergb | rommrgb; None when ignored.

    GIF cannot carry a profile, so any value but ``no`` is a 400 for it. ``adobergb`` and
    ``rommrgb`` are not supported and ignored (None).

    >>> parse_iccprofile("yes", "image/png"), parse_iccprofile("adobergb", "image/png")
    ('yes', None)
    """
    text = value.strip().lower()
    if text not in ICC_VALUES:
        raise RenderParameterError(
            f"invalid iccprofile {value!r}: expected no, yes, srgb, adobergb or rommrgb"
        )
    if media_type == GIF and text != "no":
        raise RenderParameterError("invalid iccprofile: image/gif cannot carry an ICC profile")
    return text if text in ("no", "yes", "srgb") else None


def parse_region(value: str) -> tuple[float, float, float, float]:
    """WADO-URI ``region=xmin,ymin,xmax,ymax`` (URI-05): normalised 0..1, min < max.

    >>> parse_region("0.25,0,0.75,1")
    (0.25, 0.0, 0.75, 1.0)
    >>> parse_region("0.5,0,0.5,1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    app.dicom.render.RenderParameterError: invalid region: xmin must be less than xmax and ...
    """
    pieces = value.split(",")
    if len(pieces) != 4:
        raise RenderParameterError(f"invalid region {value!r}: expected xmin,ymin,xmax,ymax")
    xmin, ymin, xmax, ymax = (parse_number(p, "region value") for p in pieces)
    if any(not 0.0 <= v <= 1.0 for v in (xmin, ymin, xmax, ymax)):
        raise RenderParameterError("invalid region: values must be between 0 and 1")
    if not (xmin < xmax and ymin < ymax):
        raise RenderParameterError(
            "invalid region: xmin must be less than xmax and ymin less than ymax"
        )
    return xmin, ymin, xmax, ymax


# --- object kinds ---


class ObjectKind:
    """What an instance can be rendered as (REND-01/10)."""

    IMAGE = "image"
    SR = "sr"
    PDF = "pdf"
    NONE = "none"


def kind_of(sop_class_uid: str, has_pixels: bool) -> str:
    """The :class:`ObjectKind` of an instance.

    >>> kind_of("1.2.840.10008.5.1.4.1.1.88.11", False), kind_of("1.2.840.10008.5.1.4.1.1.2", True)
    ('sr', 'image')
    """
    if has_pixels:
        return ObjectKind.IMAGE
    if sop_class_uid.startswith(_SR_PREFIX):
        return ObjectKind.SR
    if sop_class_uid == _ENCAPSULATED_PDF:
        return ObjectKind.PDF
    return ObjectKind.NONE


def read_dataset(raw: bytes, *, stop_before_pixels: bool = False) -> Dataset:
    """The dataset of a PS3.10 file (pixel data kept as bytes, decoded per frame later)."""
    ds = dcmread(io.BytesIO(raw), force=True, stop_before_pixels=stop_before_pixels)
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        # a bare dataset (no File Meta): its encoding as read tells the syntax
        implicit, little = ds.original_encoding
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else ExplicitVRLittleEndian
            if little
            else ExplicitVRBigEndian
        )
    return ds


# --- the pipeline ---

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
    try:
        c, w = _first(center), _first(width)
    except (TypeError, ValueError, IndexError):
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function not in VOI_FUNCTIONS.values():
        function = "LINEAR"
    if w <= 0 or (function == "LINEAR" and w < 1):
        return None
    return Window(c, w, function)


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


#: functional group macros whose attributes the pipeline reads at the top level (PS3.3 C.7.6.16)
_FRAME_MACROS: Final = ("PixelValueTransformationSequence", "FrameVOILUTSequence")


def frame_attributes(ds: Dataset, number: int) -> Dataset:
    """``ds`` with frame ``number``'s rescale and VOI from the functional groups at top level.

    Enhanced multi-frame objects (PS3.3 C.7.6.16) keep RescaleSlope/Intercept and
    WindowCenter/Width in the Shared or Per-frame Functional Groups; a per-frame value wins over
    a shared one. Other objects are returned unchanged.

    >>> ds = Dataset(); item = Dataset(); voi = Dataset()
    >>> voi.WindowCenter, voi.WindowWidth = 40, 400
    >>> item.FrameVOILUTSequence = [voi]
    >>> ds.PerFrameFunctionalGroupsSequence = [Dataset(), item]
    >>> (float(frame_attributes(ds, 2).WindowCenter), "WindowCenter" in frame_attributes(ds, 1))
    (40.0, False)
    """
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not shared and not per_frame:
        return ds
    groups: list[Dataset] = []
    if shared:
        groups.append(shared[0])
    if per_frame and 0 < number <= len(per_frame):
        groups.append(per_frame[number - 1])
    flat = Dataset(dict(ds.items()))  # a new element dict: ``ds`` itself stays unchanged
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        flat.file_meta = meta
    for group in groups:
        for macro in _FRAME_MACROS:
            if macro in group and len(group[macro].value) > 0:
                for element in group[macro].value[0]:
                    flat[element.tag] = element
    return flat


def single_frame_dataset(header: bytes, frame: bytes, number: int) -> Dataset:
    """A one-frame dataset from a blob's header bytes and frame ``number``'s stored bytes.

    Lets a multi-frame instance be rendered from byte ranges (header + one frame) rather than
    the whole blob. ``frame`` is native pixel data or one frame's encapsulated bytes.
    """
    ds = frame_attributes(read_dataset(header, stop_before_pixels=True), number)
    for keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        if keyword in ds:
            del ds[keyword]
    ds.NumberOfFrames = 1
    if UID(ds.file_meta.TransferSyntaxUID).is_encapsulated:
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = frame
        ds["PixelData"].VR = "OB" if int(ds.get("BitsAllocated", 8)) <= 8 else "OW"
    return ds


def to_image(ds: Dataset, number: int, window: Window | None) -> Image.Image:
    """Steps 1-5 of the pipeline for one frame: an ``L`` or ``RGB`` Pillow image."""
    pixels = _frame(ds, number)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if samples == 1 and photometric != "PALETTE COLOR":
        frame_ds = frame_attributes(ds, number)
        return Image.fromarray(grayscale(pixels, frame_ds, window), mode="L")
    return Image.fromarray(colour(pixels, ds), mode="RGB")


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


def _annotate(image: Image.Image, ds: Dataset, params: RenderParams, number: int) -> Image.Image:
    """Burn the asked annotations into the image (REND-06), last in the pipeline."""
    lines_top: list[str] = []
    lines_bottom: list[str] = []
    if "patient" in params.annotation:
        lines_top.append(str(ds.get("PatientName", "") or ""))
        extra = " ".join(
            str(v)
            for v in (ds.get("PatientID"), ds.get("PatientBirthDate"), ds.get("PatientSex"))
            if v
        )
        if extra:
            lines_top.append(extra)
    if "technique" in params.annotation:
        modality = str(ds.get("Modality", "") or "")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        lines_bottom.append(f"{modality} frame {number}/{frames}".strip())
        window = params.window or dataset_window(ds)
        if window is not None:
            lines_bottom.append(f"C {window.center:g} W {window.width:g}")
    if not lines_top and not lines_bottom:
        return image
    image = image.copy()
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    white: Any = 255 if image.mode == "L" else (255, 255, 255)
    black: Any = 0 if image.mode == "L" else (0, 0, 0)
    line_height = 11
    y = 2
    for text in lines_top:
        draw.text((3, y + 1), text, fill=black, font=font)
        draw.text((2, y), text, fill=white, font=font)
        y += line_height
    y = image.size[1] - 2 - line_height * len(lines_bottom)
    for text in lines_bottom:
        draw.text((3, y + 1), text, fill=black, font=font)
        draw.text((2, y), text, fill=white, font=font)
        y += line_height
    return image


def _icc(
    ds: Dataset, image: Image.Image, iccprofile: str | None
) -> tuple[Image.Image, bytes | None]:
    """The image (converted to sRGB when asked) and the profile to embed (REND-07)."""
    if iccprofile in (None, "no"):
        return image, None
    source = ds.get("ICCProfile")
    if iccprofile == "yes" and source:
        return image, bytes(source)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    if source and image.mode == "RGB":
        converted = ImageCms.profileToProfile(
            image, ImageCms.ImageCmsProfile(io.BytesIO(bytes(source))), srgb
        )
        if converted is not None:
            image = converted
    return image, srgb.tobytes()


def encode(images: Sequence[Image.Image], params: RenderParams, *, frame_time: float) -> bytes:
    """JPEG (baseline), PNG or GIF bytes; several images make an animated GIF."""
    out = io.BytesIO()
    first = images[0]
    icc = first.info.get("icc_profile")
    if params.media_type == JPEG:
        options: dict[str, Any] = {"quality": params.quality, "optimize": False}
        if icc:
            options["icc_profile"] = icc
        first.save(out, format="JPEG", progressive=False, **options)
    elif params.media_type == PNG:
        png_options: dict[str, Any] = {"compress_level": 3}
        if icc:
            png_options["icc_profile"] = icc
        first.save(out, format="PNG", **png_options)
    elif params.media_type == GIF:
        if len(images) > 1:
            first.save(
                out,
                format="GIF",
                save_all=True,
                append_images=list(images[1:]),
                duration=max(20, round(frame_time)),
                loop=0,
            )
        else:
            first.save(out, format="GIF")
    else:  # pragma: no cover - callers negotiate only IMAGE_TYPES
        raise RenderParameterError(f"cannot render as {params.media_type}")
    return out.getvalue()


def render(
    raw: bytes,
    params: RenderParams,
    ds: Dataset | None = None,
    limits: OutputLimits = DEFAULT_LIMITS,
    decode: DecodeLimits = DEFAULT_DECODE_LIMITS,
) -> bytes:
    """Render the frames ``params.frames`` of a PS3.10 file as ``params.media_type``.

    Several frames make one animated GIF (only ``image/gif`` takes several); it ends before a
    frame that would take it beyond ``limits.animation_pixels`` (an instance's frames are all
    the same size), so frames left out are never decoded. Raises
    :class:`RenderParameterError` for an impossible frame number, and
    :class:`~app.errors.DecodedSizeTooLarge` before decoding a frame beyond ``decode``.
    """
    ds = ds if ds is not None else read_dataset(raw)
    check_renderable(ds, decode)
    images: list[Image.Image] = []
    spent = 0
    for number in params.frames:
        image = to_image(ds, number, params.window)
        image = crop_and_scale(image, params, limits.pixels)
        if params.annotation:
            image = _annotate(image, ds, params, number)
        images.append(image)
        spent += image.size[0] * image.size[1]
        if spent + image.size[0] * image.size[1] > limits.animation_pixels:
            break
    first, icc = _icc(ds, images[0], params.iccprofile)
    if icc is not None:
        first.info["icc_profile"] = icc
    images[0] = first
    frame_time = float(ds.get("FrameTime", 100) or 100)
    return encode(images, params, frame_time=frame_time)


def check_renderable(ds: Dataset, limits: DecodeLimits) -> None:
    """A frame of ``ds`` decoded and rendered stays within ``limits`` (issue 19): its Image Pixel
    attributes, and the codestream each fragment of encapsulated pixel data starts."""
    shape = PixelShape.of_dataset(ds)
    if shape is None:
        return
    limits.check_render(shape)
    if UID(ds.file_meta.TransferSyntaxUID).is_encapsulated and "PixelData" in ds:
        limits.check_fragments(ds.PixelData)


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames, 1 when absent."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


# --- text and documents (REND-01/10) ---


def _content_lines(items: Any, depth: int) -> list[tuple[int, str, str]]:
    lines: list[tuple[int, str, str]] = []
    for item in items:
        name = ""
        if "ConceptNameCodeSequence" in item and len(item.ConceptNameCodeSequence) > 0:
            name = str(item.ConceptNameCodeSequence[0].get("CodeMeaning", ""))
        value_type = str(item.get("ValueType", ""))
        value = ""
        if value_type == "TEXT":
            value = str(item.get("TextValue", ""))
        elif value_type == "CODE" and "ConceptCodeSequence" in item:
            value = str(item.ConceptCodeSequence[0].get("CodeMeaning", ""))
        elif value_type == "NUM" and "MeasuredValueSequence" in item:
            measured = item.MeasuredValueSequence[0]
            unit = ""
            if "MeasurementUnitsCodeSequence" in measured:
                unit = str(measured.MeasurementUnitsCodeSequence[0].get("CodeValue", ""))
            value = f"{measured.get('NumericValue', '')} {unit}".strip()
        elif value_type in ("DATE", "TIME", "DATETIME", "UIDREF", "PNAME"):
            keyword = {
                "DATE": "Date",
                "TIME": "Time",
                "DATETIME": "DateTime",
                "UIDREF": "UID",
                "PNAME": "PersonName",
            }[value_type]
            value = str(item.get(keyword, ""))
        lines.append((depth, name, value))
        if "ContentSequence" in item:
            lines.extend(_content_lines(item.ContentSequence, depth + 1))
    return lines


def render_text(ds: Dataset, media_type: str) -> bytes:
    """A structured report's content tree as ``text/plain`` or ``text/html`` (UTF-8)."""
    title = ""
    if "ConceptNameCodeSequence" in ds and len(ds.ConceptNameCodeSequence) > 0:
        title = str(ds.ConceptNameCodeSequence[0].get("CodeMeaning", ""))
    lines = _content_lines(ds.get("ContentSequence", []), 0)
    if media_type == TEXT_PLAIN:
        text = [title] if title else []
        for depth, name, value in lines:
            text.append("  " * depth + (f"{name}: {value}" if value else name))
        return ("\n".join(text) + "\n").encode("utf-8")
    body = [f"<h1>{html.escape(title)}</h1>"] if title else []
    body.append("<ul>")
    for depth, name, value in lines:
        label = html.escape(name) + (f": {html.escape(value)}" if value else "")
        body.append(f'<li style="margin-left:{depth * 1.5}em">{label}</li>')
    body.append("</ul>")
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>'
        + html.escape(title or "Structured report")
        + "</title></head><body>"
        + "".join(body)
        + "</body></html>"
    )
    return page.encode("utf-8")


def encapsulated_pdf(ds: Dataset) -> bytes:
    """The Encapsulated Document of a PDF object, without the padding byte (REND-10)."""
    data = bytes(ds.EncapsulatedDocument)
    length = ds.get("EncapsulatedDocumentLength")
    if length is not None and 0 < int(length) <= len(data):
        return data[: int(length)]
    end = data.rfind(b"%%EOF")
    return data[: end + 5] if end >= 0 else data

"""Rendering parameters (PS3.18 §8.3.5.1): what decides the rendered bytes, parsed and checked.

The media types we produce, the value types of a rendering's parameters (:class:`RenderParams`,
:class:`Viewport`, :class:`Window`, :class:`OutputLimits`), and their parsers
(:func:`parse_quality`, :func:`parse_viewport`, :func:`parse_window`, :func:`parse_annotation`,
:func:`parse_iccprofile`, WADO-URI's :func:`parse_region`). Every malformed value raises
:class:`RenderParameterError` whose message names the parameter (400). So does an output size
beyond the limits (:func:`check_output_size`): PS3.18 §8.3.5.1.3 makes the viewport the size of
the returned image, and asks for 400 when viewport dimensions are not supported.
"""

import math
from dataclasses import dataclass
from typing import Final

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


def parse_quality(value: str | None, name: str = "quality") -> int:
    """``quality`` (REND-03): an integer 1..100; None (absent) gives the default 90.

    >>> parse_quality(None), parse_quality("75")
    (90, 75)
    >>> parse_quality("0")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    app.dicom.render.parameters.RenderParameterError: invalid quality '0': expected an integer from
    1 to 100
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
    >>> parse_viewport("0,10")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    app.dicom.render.parameters.RenderParameterError: invalid viewport: vw must be a positive
    integer
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
    >>> check_output_size(
    ...     "viewport", 65500, 65500, 4096 * 4096
    ... )  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    app.dicom.render.parameters.RenderParameterError: invalid viewport: 65500 x 65500 is 4290250000
    pixels, ...
    >>> check_output_size(
    ...     "columns", 70000, None, 4096 * 4096
    ... )  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    app.dicom.render.parameters.RenderParameterError: invalid columns: 70000 pixels is more than
    65535, ...
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
    app.dicom.render.parameters.RenderParameterError: invalid window: width must be greater than 0
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
    >>> parse_annotation("")  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    app.dicom.render.parameters.RenderParameterError: invalid annotation '': expected keywords such
    as ...
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
    >>> parse_region("0.5,0,0.5,1")  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    app.dicom.render.parameters.RenderParameterError: invalid region: xmin must be less than xmax
    and ...
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

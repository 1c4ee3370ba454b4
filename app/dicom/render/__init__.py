"""Rendering: DICOM pixels -> an 8-bit consumer image (PS3.18 §8.3.5.1, PS3.4 Annex N.2).

Pure and synchronous (numpy + Pillow); callers run :func:`render` off the event loop.

The pipeline (REND-02), in order (:mod:`.pipeline`):

1. decode the frame (pydicom; compressed syntaxes through pylibjpeg / pyjpegls), once its decoded
   size is known to be within :class:`~app.dicom.decoding.DecodeLimits` (issue 19);
2. Modality LUT: RescaleSlope/RescaleIntercept or the Modality LUT Sequence (PS3.3 C.11.1);
3. VOI: the ``window`` parameter, else the first WindowCenter/WindowWidth with VOILUTFunction,
   else the VOI LUT Sequence, else the pixel min/max; the three VOI functions LINEAR,
   LINEAR_EXACT and SIGMOID follow PS3.3 C.11.2.1.2.1, C.11.2.1.3.1 and C.11.2.1.3.2, mapping to
   0..255;
4. MONOCHROME1 is inverted;
5. YBR is converted to RGB (by the decoder), PALETTE COLOR through its lookup tables
   (steps 1-5: :mod:`.pixels`);
6. crop (``viewport`` sx, sy, sw, sh or the WADO-URI ``region``; negative sw/sh flip), then
   scale keeping the aspect ratio to the largest size that fits (vw, vh), up or down, but never
   beyond :class:`OutputLimits` (an image sent at its own size is not scaled) (:mod:`.geometry`);
7. annotations are burned in last (:mod:`.annotation`);
8. encoding: JPEG (baseline 8-bit Huffman, ``quality``), PNG, GIF (animated for several frames)
   (:mod:`.encoding`).

Parameters are parsed and checked in :mod:`.parameters`; every malformed value raises
:class:`RenderParameterError` whose message names the parameter (400). What an instance is and
its dataset (one frame of it alone) are :mod:`.dataset`; structured reports as text and
encapsulated PDF are :mod:`.documents`.

This package re-exports the names its callers use.
"""

from app.dicom.render.dataset import ObjectKind, kind_of, read_dataset, single_frame_dataset
from app.dicom.render.documents import encapsulated_pdf, render_text
from app.dicom.render.geometry import fitted_size
from app.dicom.render.parameters import (
    DEFAULT_LIMITS,
    GIF,
    IMAGE_TYPES,
    MAX_SIDE,
    PDF,
    PNG,
    TEXT_HTML,
    TEXT_PLAIN,
    OutputLimits,
    RenderParameterError,
    RenderParams,
    Viewport,
    Window,
    check_output_size,
    is_digits,
    make_window,
    parse_annotation,
    parse_iccprofile,
    parse_number,
    parse_quality,
    parse_region,
    parse_viewport,
    parse_window,
)
from app.dicom.render.pipeline import render
from app.dicom.render.pixels import grayscale

__all__ = [
    "DEFAULT_LIMITS",
    "GIF",
    "IMAGE_TYPES",
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
    "encapsulated_pdf",
    "fitted_size",
    "grayscale",
    "is_digits",
    "kind_of",
    "make_window",
    "parse_annotation",
    "parse_iccprofile",
    "parse_number",
    "parse_quality",
    "parse_region",
    "parse_viewport",
    "parse_window",
    "read_dataset",
    "render",
    "render_text",
    "single_frame_dataset",
]

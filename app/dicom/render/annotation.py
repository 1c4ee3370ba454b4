"""Annotations burned into a rendered image: step 7 of the pipeline (REND-06, PS3.18
§8.3.5.1.1), the last before encoding."""

from typing import Any, Final

from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset

from app.dicom.render.parameters import RenderParams
from app.dicom.render.pixels import dataset_window

_LINE_HEIGHT: Final = 11


def annotate(image: Image.Image, ds: Dataset, params: RenderParams, number: int) -> Image.Image:
    """Burn the asked annotations into the image (REND-06), last in the pipeline: patient
    lines at the top, technique lines at the bottom."""
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
    _draw_lines(draw, font, image.mode, lines_top, 2)
    _draw_lines(
        draw, font, image.mode, lines_bottom, image.size[1] - 2 - _LINE_HEIGHT * len(lines_bottom)
    )
    return image


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont | ImageFont.TransposedFont,
    mode: str,
    lines: list[str],
    y: int,
) -> None:
    """White ``lines`` from ``y`` down, each with a black shadow one pixel down and right, so
    they read on any image."""
    white: Any = 255 if mode == "L" else (255, 255, 255)
    black: Any = 0 if mode == "L" else (0, 0, 0)
    for text in lines:
        draw.text((3, y + 1), text, fill=black, font=font)
        draw.text((2, y), text, fill=white, font=font)
        y += _LINE_HEIGHT

"""Annotations burned into a rendered image: step 7 of the pipeline (REND-06, PS3.18
§8.3.5.1.1), the last before encoding.

Patient names are written as people read them ("Müller, Jürgen", PS3.5 §6.2.1.1's components,
never the raw ``^``), in DejaVu Sans, which has the glyphs of Latin, Greek and Cyrillic names.
The font is the system's (Debian's ``fonts-dejavu-core``, which the Dockerfile and ``.ci/run``
install; the usual paths of other distributions; matplotlib's copy when it is installed). Without
it, Pillow's own font is used, which has ASCII only: names are then written without their
accents ("Muller") rather than with boxes. CJK names show as boxes in DejaVu: their alphabetic
component group, when present, is the one written.
"""

import functools
import importlib.util
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset

from app.dicom.render.parameters import RenderParams
from app.dicom.render.pixels import dataset_window

#: where DejaVu Sans is found: Debian/Ubuntu, Fedora, Arch/SUSE, Alpine
SYSTEM_FONTS: Final = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/DejaVuSans.ttf",
)

Font = ImageFont.ImageFont | ImageFont.FreeTypeFont | ImageFont.TransposedFont


def _candidates() -> list[Path]:
    paths = [Path(p) for p in SYSTEM_FONTS]
    spec = importlib.util.find_spec("matplotlib")  # located, not imported
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            paths.append(Path(location) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")
    return paths


@functools.cache
def annotation_font(size: int, candidates: tuple[Path, ...] | None = None) -> tuple[Font, bool]:
    """The font annotations are written in at ``size`` pixels, and whether it has more than
    ASCII (DejaVu Sans; else Pillow's own font, ASCII only)."""
    for path in candidates if candidates is not None else tuple(_candidates()):
        try:
            return ImageFont.truetype(str(path), size), True
        except OSError:  # missing or unreadable: the next candidate
            continue
    return ImageFont.load_default(size), False


def format_person_name(value: Any) -> str:
    """A PN value as people read it: "Family, Given Middle", with prefix and suffix.

    The alphabetic component group is used when it has a name, else the ideographic, else the
    phonetic one (PS3.5 §6.2.1.2).

    >>> format_person_name("Müller^Jürgen")
    'Müller, Jürgen'
    >>> format_person_name("Doe^Jane^Q^Dr.^PhD")
    'Doe, Dr. Jane Q, PhD'
    >>> format_person_name("Yamada^Tarou=山田^太郎=やまだ^たろう")
    'Yamada, Tarou'
    >>> format_person_name("=山田^太郎"), format_person_name("Anonymous"), format_person_name("")
    ('山田, 太郎', 'Anonymous', '')
    """
    text = str(value or "")
    groups = text.split("=")
    group = next((g for g in groups if g.replace("^", "").strip()), "")
    parts = [p.strip() for p in group.split("^")] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    first = " ".join(p for p in (prefix, given, middle) if p)
    name = ", ".join(p for p in (family, first) if p)
    return f"{name}, {suffix}" if suffix and name else name or suffix


def _date(value: Any) -> str:
    """A DA value as YYYY-MM-DD (anything else as it is)."""
    text = str(value or "").strip()
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def _ascii(text: str) -> str:
    """``text`` for a font with ASCII glyphs only: accents dropped, other letters '?'.

    >>> _ascii("Müller, Jürgen Ø")
    'Muller, Jurgen ?'
    """
    folded = unicodedata.normalize("NFKD", text)
    return "".join(c if c.isascii() else "?" for c in folded if not unicodedata.combining(c))


def annotation_lines(ds: Dataset, params: RenderParams, number: int) -> tuple[list[str], list[str]]:
    """The text burned in: patient lines at the top, technique lines at the bottom."""
    top: list[str] = []
    bottom: list[str] = []
    if "patient" in params.annotation:
        top.append(format_person_name(ds.get("PatientName")))
        extra = " ".join(
            v
            for v in (
                str(ds.get("PatientID", "") or ""),
                _date(ds.get("PatientBirthDate")),
                str(ds.get("PatientSex", "") or ""),
            )
            if v
        )
        if extra:
            top.append(extra)
    if "technique" in params.annotation:
        modality = str(ds.get("Modality", "") or "")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bottom.append(f"{modality} frame {number}/{frames}".strip())
        window = params.window or dataset_window(ds)
        if window is not None:
            bottom.append(f"C {window.center:g} W {window.width:g}")
    return [t for t in top if t], bottom


def annotate(image: Image.Image, ds: Dataset, params: RenderParams, number: int) -> Image.Image:
    """Burn the asked annotations into the image (REND-06), last in the pipeline: patient
    lines at the top, technique lines at the bottom."""
    top, bottom = annotation_lines(ds, params, number)
    if not top and not bottom:
        return image
    size = max(9, min(24, image.size[1] // 32))
    font, unicode = annotation_font(size)
    return burn(image, top, bottom, font, unicode=unicode, size=size)


def burn(
    image: Image.Image,
    top: Sequence[str],
    bottom: Sequence[str],
    font: Font,
    *,
    unicode: bool,
    size: int,
) -> Image.Image:
    """A copy of ``image`` with ``top`` lines written from its top and ``bottom`` ones up to its
    bottom, in ``font`` (of ``size`` pixels; ASCII only unless ``unicode``)."""
    if not unicode:
        top, bottom = [_ascii(t) for t in top], [_ascii(t) for t in bottom]
    line_height = size + size // 4 + 1
    image = image.copy()
    draw = ImageDraw.Draw(image)
    _draw_lines(draw, font, image.mode, top, 2, line_height)
    _draw_lines(
        draw, font, image.mode, bottom, image.size[1] - 2 - line_height * len(bottom), line_height
    )
    return image


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    font: Font,
    mode: str,
    lines: Sequence[str],
    y: int,
    line_height: int,
) -> None:
    """White ``lines`` from ``y`` down, each with a black shadow one pixel down and right, so
    they read on any image."""
    white: Any = 255 if mode == "L" else (255, 255, 255)
    black: Any = 0 if mode == "L" else (0, 0, 0)
    for text in lines:
        draw.text((3, y + 1), text, fill=black, font=font)
        draw.text((2, y), text, fill=white, font=font)
        y += line_height

"""Burned-in annotations (REND-06): names as people read them, in a font with their letters
(DejaVu Sans: fonts-dejavu-core, installed by .ci/run and the Dockerfile), and an ASCII
fallback without boxes when no such font is found."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset

from app.dicom.render.annotation import (
    annotate,
    annotation_font,
    annotation_lines,
    burn,
    format_person_name,
)
from app.dicom.render.parameters import PNG, RenderParams
from tests.factories import make_dataset

PATIENT = RenderParams(PNG, annotation=("patient",))


def _glyph(font: object, text: str) -> np.ndarray:
    image = Image.new("L", (60, 40))
    ImageDraw.Draw(image).text((4, 4), text, fill=255, font=font)  # type: ignore[arg-type]
    return np.asarray(image)


def test_person_names_are_formatted() -> None:
    assert format_person_name("Müller^Jürgen") == "Müller, Jürgen"
    assert format_person_name("Doe^Jane^Q^Dr.^PhD") == "Doe, Dr. Jane Q, PhD"
    assert format_person_name("Yamada^Tarou=山田^太郎=やまだ^たろう") == "Yamada, Tarou"
    assert format_person_name("^^^^") == ""
    assert format_person_name(None) == ""


def test_lines_from_the_dataset() -> None:
    ds = make_dataset(
        PatientName="Müller^Jürgen", PatientID="P-7", PatientBirthDate="19700102", PatientSex="M"
    )
    ds.SpecificCharacterSet = "ISO_IR 192"
    top, bottom = annotation_lines(ds, PATIENT, 1)
    assert top == ["Müller, Jürgen", "P-7 1970-01-02 M"]
    assert bottom == []
    assert "^" not in "".join(top)
    empty = Dataset()
    assert annotation_lines(empty, PATIENT, 1) == ([], [])


def test_the_font_has_the_letters() -> None:
    font, unicode = annotation_font(20)
    assert unicode, "DejaVu Sans not found (apt-get install fonts-dejavu-core)"
    missing = _glyph(font, "\ue000")  # a private-use code point: the font's empty box
    for letter in "üéßøÅΩЖ":
        drawn = _glyph(font, letter)
        assert not np.array_equal(drawn, missing), letter
    assert not np.array_equal(_glyph(font, "ü"), _glyph(font, "u"))


def test_umlauts_reach_the_pixels() -> None:
    def burned(name: str) -> np.ndarray:
        ds = make_dataset(rows=128, columns=256, PatientName=name)
        image = Image.new("L", (256, 128))
        return np.asarray(annotate(image, ds, PATIENT, 1))

    with_umlaut, without = burned("Müller^Jürgen"), burned("Muller^Jurgen")
    assert with_umlaut.any()
    assert not np.array_equal(with_umlaut, without)


def test_fallback_without_the_font(tmp_path: Path) -> None:
    font, unicode = annotation_font(9, (tmp_path / "missing.ttf",))
    assert not unicode
    # the fallback writes no boxes: accents are dropped ("Muller"), other letters become "?"
    burned = burn(Image.new("L", (128, 64)), ["Müller, Jürgen"], [], font, unicode=False, size=9)
    expected = Image.new("L", (128, 64))
    draw = ImageDraw.Draw(expected)
    draw.text((3, 3), "Muller, Jurgen", fill=0, font=font)
    draw.text((2, 2), "Muller, Jurgen", fill=255, font=font)
    assert np.array_equal(np.asarray(burned), np.asarray(expected))
    assert np.asarray(burned).any()

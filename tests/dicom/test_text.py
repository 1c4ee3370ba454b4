"""PN / TM / DA normalisation (doctests in app.dicom.text cover the main cases)."""

from datetime import date

import pytest

from app.dicom.text import normalize_pn, normalize_tm, parse_da


@pytest.mark.parametrize(
    ("value", "expected"),
    [("doe^jöhn", "DOE^JOHN"), ("Ångström", "ANGSTROM"), ("ﬁsh", "FISH"), ("", "")],
)
def test_normalize_pn(value: str, expected: str) -> None:
    assert normalize_pn(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("00", "000000.000000"),
        ("1230", "123000.000000"),
        ("123005.123456", "123005.123456"),
        ("12:30", "123000.000000"),
        ("12:30:05", "123005.000000"),
        (" 1230 ", "123000.000000"),
        ("24", None),
        ("1260", None),
        ("123061", None),
        ("123005.1234567", None),
        ("12.5", None),
        ("\uff11\uff12", None),  # full-width digits are not DICOM digits
    ],
)
def test_normalize_tm(value: str, expected: str | None) -> None:
    assert normalize_tm(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20240101", date(2024, 1, 1)),
        ("2024.01.31", date(2024, 1, 31)),
        ("20241301", None),
        ("2024011", None),
        ("2024-01-01", None),
        ("junk", None),
    ],
)
def test_parse_da(value: str, expected: date | None) -> None:
    assert parse_da(value) == expected

"""Normalised forms of PN, TM and DA values for the index (PS3.5 §6.2, PS3.4 §C.2.2.2, CS-02).

* :func:`normalize_pn` folds a person name for case- and accent-insensitive matching (QIDO-06/14);
* :func:`normalize_tm` turns any valid TM value (PS3.5 Table 6.2-1, including the ACR-NEMA
  ``HH:MM:SS`` form) into fixed-width ``HHMMSS.ffffff`` text that sorts and range-compares as
  text (PS3.4 §C.2.2.2.5);
* :func:`parse_da` reads a DA value (also the ACR-NEMA ``YYYY.MM.DD`` form) as a ``date``;
* :func:`storable` replaces what no database row can hold as text (NUL, surrogate code points).

Invalid values give ``None``: ingest keeps the original text in the DICOM JSON and indexes
nothing for the attribute.
"""

import re
import unicodedata
from datetime import date
from typing import Final

__all__ = ["normalize_pn", "normalize_tm", "normalize_tm_upper", "parse_da", "storable"]

# PS3.5 Table 6.2-1 TM: HH[MM[SS[.F{1,6}]]]; ACR-NEMA (PS3.5 2004 and earlier) HH:MM:SS.frac
_TM_RE: Final = re.compile(r"(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?", re.ASCII)
_TM_ACR_NEMA_RE: Final = re.compile(r"(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?", re.ASCII)
_DA_RE: Final = re.compile(r"(\d{4})(\d{2})(\d{2})", re.ASCII)
_DA_ACR_NEMA_RE: Final = re.compile(r"(\d{4})\.(\d{2})\.(\d{2})", re.ASCII)
#: text a row cannot store: NUL (PostgreSQL's text has none) and surrogate code points (no UTF-8)
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")


def normalize_pn(value: str) -> str:
    """Fold a person name for matching: upper case, accents stripped (NFKD, combining marks out).

    Delimiters (``^`` between components, ``=`` between groups) are kept.

    Examples
    --------
    >>> normalize_pn("Müller^Jürgen")
    'MULLER^JURGEN'
    >>> normalize_pn("  Éloïse^Noël  ")
    'ELOISE^NOEL'
    >>> normalize_pn("Yamada^Tarou=山田^太郎")
    'YAMADA^TAROU=山田^太郎'
    """
    decomposed = unicodedata.normalize("NFKD", value.strip())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.upper()


def normalize_tm(value: str) -> str | None:
    """Return a TM value as ``HHMMSS.ffffff`` (missing parts zero), or ``None`` if invalid.

    Examples
    --------
    >>> normalize_tm("07")
    '070000.000000'
    >>> normalize_tm("0930")
    '093000.000000'
    >>> normalize_tm("235959.12")
    '235959.120000'
    >>> normalize_tm("12:30:05.5")
    '123005.500000'
    >>> normalize_tm("235960")  # leap second (PS3.5 Table 6.2-1 allows SS = 60)
    '235960.000000'
    >>> normalize_tm("2500"), normalize_tm("12345"), normalize_tm(""), normalize_tm("ab")
    (None, None, None, None)
    """
    text = value.strip()
    match = _TM_RE.fullmatch(text) or _TM_ACR_NEMA_RE.fullmatch(text)
    if match is None:
        return None
    hh, mm, ss, frac = match.groups()
    if int(hh) > 23 or int(mm or 0) > 59 or int(ss or 0) > 60:
        return None
    return f"{hh}{mm or '00'}{ss or '00'}.{(frac or '').ljust(6, '0')}"


def normalize_tm_upper(value: str) -> str | None:
    """The last instant a partial TM value covers, as ``HHMMSS.ffffff`` (a range's upper bound).

    Examples
    --------
    >>> normalize_tm_upper("10"), normalize_tm_upper("1030"), normalize_tm_upper("103015.5")
    ('105959.999999', '103059.999999', '103015.599999')
    >>> normalize_tm_upper("103015.123456"), normalize_tm_upper("99")
    ('103015.123456', None)
    """
    text = value.strip()
    match = _TM_RE.fullmatch(text) or _TM_ACR_NEMA_RE.fullmatch(text)
    if match is None or normalize_tm(text) is None:
        return None
    hh, mm, ss, frac = match.groups()
    if ss is None:
        return f"{hh}{mm or '59'}59.999999"
    return f"{hh}{mm}{ss}.{(frac or '').ljust(6, '9')}"


def parse_da(value: str) -> date | None:
    """Return a DA value (``YYYYMMDD`` or ACR-NEMA ``YYYY.MM.DD``) as a date, or ``None``.

    Examples
    --------
    >>> parse_da("20240229")
    datetime.date(2024, 2, 29)
    >>> parse_da("1999.12.31")
    datetime.date(1999, 12, 31)
    >>> parse_da("20230229"), parse_da("2024-01-01"), parse_da(""), parse_da("00000000")
    (None, None, None, None)
    """
    text = value.strip()
    match = _DA_RE.fullmatch(text) or _DA_ACR_NEMA_RE.fullmatch(text)
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def storable(text: str) -> str:
    """``text`` with each NUL and surrogate code point replaced by U+FFFD.

    PostgreSQL refuses both in a text column while SQLite keeps them, so every database gets
    this form of a value (the stored DICOM JSON keeps the original).

    >>> storable("Doe\\x00^Jane") == "Doe\\ufffd^Jane", storable("ok")
    (True, 'ok')
    """
    return _UNSTORABLE.sub("\ufffd", text)

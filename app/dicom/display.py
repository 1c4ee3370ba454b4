"""DICOM values as people read them: the web pages' display forms (PS3.5 §6.2, PS3.18 Annex F).

The pages show what QIDO-RS returns (DICOM JSON objects); these functions read one attribute of
such an object and format it: a person name as "Family, Given Middle" (PS3.5 §6.2.1: components
separated by ``^``), a DA as ISO 8601 ``YYYY-MM-DD``, a TM as ``HH:MM[:SS]``, a list of codes
joined. Values that are not what their VR says are shown as they are (never dropped, never an
error): a page must show a non-conformant study too. Output is plain text; the templates escape
it.

The report SOP classes (structured reports and Encapsulated PDF) are named here as well: the
study page lists them as reports.
"""

from collections.abc import Mapping
from typing import Any, Final

from pydicom._uid_dict import UID_dictionary

__all__ = [
    "ENCAPSULATED_PDF",
    "REPORT_SOP_CLASSES",
    "SR_PREFIX",
    "da",
    "first",
    "is_report",
    "number",
    "person_name",
    "sop_class_name",
    "strings",
    "tm",
]

#: PS3.4 Annex O (structured reporting storage): every SR SOP class UID starts so
SR_PREFIX: Final = "1.2.840.10008.5.1.4.1.1.88."
ENCAPSULATED_PDF: Final = "1.2.840.10008.5.1.4.1.1.104.1"
#: the SOP classes the study page lists as reports: every SR class pydicom knows, and PDF
REPORT_SOP_CLASSES: Final = frozenset(
    {str(uid) for uid in UID_dictionary if str(uid).startswith(SR_PREFIX)} | {ENCAPSULATED_PDF}
)

JsonObject = Mapping[str, Any]


def _values(obj: JsonObject, tag: str) -> list[Any]:
    element = obj.get(tag)
    if not isinstance(element, Mapping):
        return []
    values = element.get("Value")
    return list(values) if isinstance(values, list) else []


def first(obj: JsonObject, tag: str) -> str:
    """The first value of ``tag`` (8 hex digits) as text, "" when absent.

    >>> first({"00100020": {"vr": "LO", "Value": ["PID-1"]}}, "00100020")
    'PID-1'
    >>> first({"00100020": {"vr": "LO"}}, "00100020"), first({}, "00100020")
    ('', '')
    """
    values = _values(obj, tag)
    if not values or values[0] is None:
        return ""
    value = values[0]
    if isinstance(value, Mapping):  # a person name's groups
        return str(value.get("Alphabetic") or value.get("Ideographic") or "")
    return str(value)


def strings(obj: JsonObject, tag: str) -> list[str]:
    """Every value of a multi-valued ``tag`` as text (ModalitiesInStudy).

    >>> strings({"00080061": {"vr": "CS", "Value": ["CT", "SR"]}}, "00080061")
    ['CT', 'SR']
    """
    return [str(v) for v in _values(obj, tag) if v is not None]


def number(obj: JsonObject, tag: str) -> int | None:
    """An IS/US value as an integer, ``None`` when absent or not a number.

    >>> number({"00201208": {"vr": "IS", "Value": [12]}}, "00201208")
    12
    >>> number({"00201208": {"vr": "IS", "Value": ["x"]}}, "00201208") is None
    True
    """
    values = _values(obj, tag)
    if not values:
        return None
    try:
        return int(values[0])
    except (TypeError, ValueError):
        return None


def person_name(value: str) -> str:
    """A PN value's first group as "Family, Given Middle, Prefix Suffix" (PS3.5 §6.2.1).

    >>> person_name("Doe^Jane^Q^Dr^PhD")
    'Doe, Jane Q, Dr PhD'
    >>> person_name("Doe^Jane"), person_name("Doe"), person_name("^Jane"), person_name("")
    ('Doe, Jane', 'Doe', 'Jane', '')
    >>> person_name("Yamada^Tarou=山田^太郎")
    'Yamada, Tarou'
    """
    group = value.split("=", 1)[0]
    parts = [p.strip() for p in group.split("^")]
    parts += [""] * (5 - len(parts))
    family, given, middle, prefix, suffix = parts[:5]
    names = " ".join(p for p in (given, middle) if p)
    honorifics = " ".join(p for p in (prefix, suffix) if p)
    return ", ".join(p for p in (family, names, honorifics) if p)


def da(value: str) -> str:
    """A DA value (``YYYYMMDD``) as ``YYYY-MM-DD``; anything else as it is.

    >>> da("20240131"), da("2024"), da("")
    ('2024-01-31', '2024', '')
    """
    value = value.strip()
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def tm(value: str) -> str:
    """A TM value (``HHMMSS.FFFFFF``, any precision) as ``HH:MM`` or ``HH:MM:SS``.

    >>> tm("101530.123"), tm("1015"), tm("10"), tm("")
    ('10:15:30', '10:15', '10', '')
    """
    digits = value.strip().split(".", 1)[0]
    if not digits.isdigit() or len(digits) % 2:
        return value.strip()
    return ":".join(digits[i : i + 2] for i in range(0, min(len(digits), 6), 2))


def sop_class_name(uid: str) -> str:
    """The name of a SOP class (PS3.6 Annex A), or its UID when unknown.

    >>> sop_class_name("1.2.840.10008.5.1.4.1.1.88.33")
    'Comprehensive SR Storage'
    >>> sop_class_name("1.2.3")
    '1.2.3'
    """
    entry = UID_dictionary.get(uid)
    return str(entry[0]) if entry else uid


def is_report(sop_class_uid: str) -> bool:
    """Whether instances of this SOP class are listed as reports (SR, Encapsulated PDF).

    >>> is_report("1.2.840.10008.5.1.4.1.1.88.11"), is_report(ENCAPSULATED_PDF)
    (True, True)
    >>> is_report("1.2.840.10008.5.1.4.1.1.2")
    False
    """
    return sop_class_uid.startswith(SR_PREFIX) or sop_class_uid == ENCAPSULATED_PDF

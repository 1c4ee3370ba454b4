"""DICOM JSON (PS3.18 Annex F) to the Native DICOM Model XML (PS3.19 §A.1), for QIDO-20/META.

The XML form of a QIDO-RS result or a WADO-RS metadata response is one ``NativeDicomModel``
document per object, each in its own part of a ``multipart/related; type="application/dicom+xml"``
message. Objects are converted from the DICOM JSON Lightbox stores and serves, so both forms say
exactly the same thing:

* each attribute is a ``DicomAttribute`` with ``tag``, ``vr`` and, for public tags, ``keyword``
  (private tags get ``privateCreator`` from their block's creator element);
* values are ``Value`` elements numbered from 1 (an empty value of a multi-valued attribute is an
  empty ``Value``), person names ``PersonName`` with ``Alphabetic`` / ``Ideographic`` /
  ``Phonetic`` groups split into their five components, sequence items ``Item``, bulk data
  ``BulkData uri=...`` and inline binary ``InlineBinary``.

Examples
--------
>>> print(to_xml({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}}).decode())
<?xml version="1.0" encoding="UTF-8"?>
<NativeDicomModel xml:space="preserve"><DicomAttribute tag="00100010" vr="PN" \
keyword="PatientName"><PersonName number="1"><Alphabetic><FamilyName>Doe</FamilyName>\
<GivenName>Jane</GivenName></Alphabetic></PersonName></DicomAttribute></NativeDicomModel>
"""

import math
from collections.abc import Mapping
from typing import Any, Final
from xml.etree.ElementTree import Element, SubElement, tostring

from pydicom.datadict import keyword_for_tag

__all__ = ["MEDIA_TYPE", "to_xml"]

MEDIA_TYPE: Final = "application/dicom+xml"
_PN_GROUPS: Final = ("Alphabetic", "Ideographic", "Phonetic")
_PN_COMPONENTS: Final = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_XML_DECLARATION: Final = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def to_xml(obj: Mapping[str, Any]) -> bytes:
    """One DICOM JSON object as a UTF-8 ``NativeDicomModel`` document."""
    root = Element("NativeDicomModel", {"xml:space": "preserve"})
    _attributes(root, obj)
    body: bytes = tostring(root, encoding="utf-8", xml_declaration=False)
    return _XML_DECLARATION + body


def _attributes(parent: Element, obj: Mapping[str, Any]) -> None:
    creators: dict[tuple[int, int], str] = {}
    for key in sorted(obj):
        tag = int(key, 16)
        group, element = tag >> 16, tag & 0xFFFF
        if group % 2 == 1 and 0x10 <= element <= 0xFF:
            values = obj[key].get("Value") or []
            if values and isinstance(values[0], str):
                creators[(group, element)] = values[0]
    for key in sorted(obj):
        _attribute(parent, key.upper(), obj[key], creators)


def _attribute(
    parent: Element, key: str, elem: Mapping[str, Any], creators: dict[tuple[int, int], str]
) -> None:
    tag = int(key, 16)
    vr = str(elem.get("vr", "UN"))
    attrs = {"tag": key, "vr": vr}
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2 == 1:
        creator = creators.get((group, element >> 8))
        if creator is not None and element > 0xFF:
            attrs["privateCreator"] = creator
    else:
        keyword = keyword_for_tag(tag)
        if keyword:
            attrs["keyword"] = keyword
    node = SubElement(parent, "DicomAttribute", attrs)
    if "BulkDataURI" in elem:
        SubElement(node, "BulkData", {"uri": str(elem["BulkDataURI"])})
        return
    if "InlineBinary" in elem:
        SubElement(node, "InlineBinary").text = str(elem["InlineBinary"])
        return
    for number, value in enumerate(elem.get("Value") or [], start=1):
        if vr == "SQ":
            item = SubElement(node, "Item", {"number": str(number)})
            _attributes(item, value or {})
        elif vr == "PN":
            _person_name(node, number, value)
        else:
            SubElement(node, "Value", {"number": str(number)}).text = _text(value)


def _person_name(node: Element, number: int, value: Any) -> None:
    name = SubElement(node, "PersonName", {"number": str(number)})
    if not isinstance(value, Mapping):
        return
    for group in _PN_GROUPS:
        text = value.get(group)
        if not text:
            continue
        group_el = SubElement(name, group)
        for component, part in zip(_PN_COMPONENTS, str(text).split("^"), strict=False):
            if part:
                SubElement(group_el, component).text = part


def _text(value: Any) -> str | None:
    """A JSON value as XML text (None: an empty value)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    return str(value)

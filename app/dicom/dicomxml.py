"""DICOM JSON (PS3.18 Annex F) <-> the Native DICOM Model XML (PS3.19 §A.1), for QIDO-20/META
and the XML form of STOW-RS (STOW-02).

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

:func:`from_xml` reads such a document back into DICOM JSON (values typed by their VR), refusing
DTDs and entities (defusedxml), so a STOW-RS request in the XML form runs through the same
instance builder as the JSON form.

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

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import fromstring as safe_fromstring
from pydicom.datadict import keyword_for_tag

__all__ = ["MEDIA_TYPE", "XmlError", "from_xml", "to_xml"]

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


# --- XML -> DICOM JSON (STOW-02, XML form) ---

_INT_VRS: Final = frozenset({"IS", "SL", "SS", "UL", "US", "SV", "UV"})
_FLOAT_VRS: Final = frozenset({"DS", "FL", "FD"})
_HEX8: Final = frozenset("0123456789ABCDEFabcdef")


class XmlError(ValueError):
    """A document that is not a well-formed Native DICOM Model (PS3.19 §A.1)."""


def from_xml(document: bytes) -> dict[str, Any]:
    """One ``NativeDicomModel`` document as a DICOM JSON object.

    >>> from_xml(b'<NativeDicomModel><DicomAttribute tag="00280010" vr="US">'
    ...          b'<Value number="1">512</Value></DicomAttribute></NativeDicomModel>')
    {'00280010': {'vr': 'US', 'Value': [512]}}
    """
    try:
        root = safe_fromstring(document, forbid_dtd=True)
    except (ParseError, DefusedXmlException) as exc:
        raise XmlError(f"not well-formed XML: {exc}") from None
    if root.tag != "NativeDicomModel":
        raise XmlError(f"the root element is {root.tag}, not NativeDicomModel")
    return _read_attributes(root)


def _numbered(children: list[Element]) -> list[Element]:
    try:
        return sorted(children, key=lambda c: int(c.get("number") or "0"))
    except ValueError:
        raise XmlError("a number attribute is not an integer") from None


def _read_attributes(node: Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr in node.findall("DicomAttribute"):
        tag = attr.get("tag") or ""
        vr = attr.get("vr") or ""
        if len(tag) != 8 or not set(tag) <= _HEX8 or len(vr) != 2 or not vr.isupper():
            raise XmlError(f"DicomAttribute with invalid tag {tag!r} or vr {vr!r}")
        elem: dict[str, Any] = {"vr": vr}
        bulk, inline = attr.find("BulkData"), attr.find("InlineBinary")
        if bulk is not None:
            elem["BulkDataURI"] = bulk.get("uri") or bulk.get("uuid") or ""
        elif inline is not None:
            elem["InlineBinary"] = (inline.text or "").strip()
        elif vr == "SQ":
            items = _numbered(attr.findall("Item"))
            if items:
                elem["Value"] = [_read_attributes(item) for item in items]
        elif vr == "PN":
            names = _numbered(attr.findall("PersonName"))
            if names:
                elem["Value"] = [_read_person_name(name) for name in names]
        else:
            values = _numbered(attr.findall("Value"))
            if values:
                elem["Value"] = [_typed(vr, v.text) for v in values]
        out[tag.upper()] = elem
    return out


def _read_person_name(node: Element) -> dict[str, str] | None:
    groups: dict[str, str] = {}
    for group in _PN_GROUPS:
        group_el = node.find(group)
        if group_el is None:
            continue
        parts = [group_el.findtext(component) or "" for component in _PN_COMPONENTS]
        groups[group] = "^".join(parts).rstrip("^")
    return groups or None


def _typed(vr: str, text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        if vr in _INT_VRS:
            return int(text.strip())
        if vr in _FLOAT_VRS:
            value = float(text.strip())
            return value if math.isfinite(value) else text.strip()
    except ValueError:
        raise XmlError(f"{text!r} is not a valid {vr} value") from None
    return text

"""DICOM JSON -> Native DICOM Model XML (PS3.19 §A.1), checked by reading the XML back."""

import base64
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from app.dicom.dicomjson import dataset_to_dict
from app.dicom.dicomxml import to_xml
from tests.corpus import charset_files, corpus_path

BASE = "https://pacs.example/dicom-web/studies/1/series/2/instances/3"


def _read_back(node: ET.Element) -> dict[str, Any]:
    """The DICOM JSON an XML document (or Item) says, so it can be compared with the source."""
    out: dict[str, Any] = {}
    for attr in node.findall("DicomAttribute"):
        tag, vr = attr.get("tag"), attr.get("vr")
        assert tag is not None
        assert vr is not None
        elem: dict[str, Any] = {"vr": vr}
        bulk, inline = attr.find("BulkData"), attr.find("InlineBinary")
        if bulk is not None:
            elem["BulkDataURI"] = bulk.get("uri")
        elif inline is not None:
            elem["InlineBinary"] = inline.text
        elif vr == "SQ":
            items = attr.findall("Item")
            assert [i.get("number") for i in items] == [str(n) for n in range(1, len(items) + 1)]
            if items:
                elem["Value"] = [_read_back(item) for item in items]
        elif vr == "PN":
            names = attr.findall("PersonName")
            if names:
                elem["Value"] = [_person_name(n) for n in names]
        else:
            values = attr.findall("Value")
            assert [v.get("number") for v in values] == [str(n) for n in range(1, len(values) + 1)]
            if values:
                elem["Value"] = [v.text for v in values]
        out[tag] = elem
    return out


def _person_name(node: ET.Element) -> dict[str, str] | None:
    groups = {}
    for group in node:
        parts = {c.tag: c.text or "" for c in group}
        names = ["FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix"]
        text = "^".join(parts.get(n, "") for n in names).rstrip("^")
        groups[group.tag] = text
    return groups or None


def _as_text(obj: dict[str, Any]) -> dict[str, Any]:
    """The JSON object with every value as the text XML carries (numbers as decimal text)."""
    out: dict[str, Any] = {}
    for tag, elem in obj.items():
        new = dict(elem)
        values = elem.get("Value")
        if values is not None:
            if elem["vr"] == "SQ":
                new["Value"] = [_as_text(item) for item in values]
            elif elem["vr"] == "PN":
                new["Value"] = [
                    {k: v.rstrip("^") for k, v in value.items()} if value else None
                    for value in values
                ]
            else:
                new["Value"] = [_number_text(v) for v in values]
        out[tag] = new
    return out


def _number_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


def _files() -> list[Path]:
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "SC_rgb.dcm", "liver.dcm"]
    return [corpus_path(n) for n in names] + list(charset_files())[:6]


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_real_files_round_trip(path: Path) -> None:
    ds = dcmread(path, force=True)
    obj = dataset_to_dict(ds, base_path=BASE, inline_binary_max=16)
    document = to_xml(obj)
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel')
    root = ET.fromstring(document)
    assert root.tag == "NativeDicomModel"
    assert root.get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"
    assert _read_back(root) == _as_text(obj)


def test_keywords_private_creators_and_binary() -> None:
    ds = Dataset()
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "DS", "1.5")
    ds.add_new(0x00091002, "OB", b"\x01\x02\x03\x04")
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    seq_item = Dataset()
    seq_item.CodeValue = "T-A0100"
    ds.AnatomicRegionSequence = [seq_item]
    obj = dataset_to_dict(ds, base_path=BASE, inline_binary_max=16)
    root = ET.fromstring(to_xml(obj))
    by_tag = {a.get("tag"): a for a in root.findall("DicomAttribute")}
    name = by_tag["00100010"]
    assert name.get("keyword") == "PatientName"
    assert name.findtext("PersonName/Ideographic/FamilyName") == "山田"
    assert name.findtext("PersonName/Phonetic/GivenName") == "たろう"
    assert by_tag["00091001"].get("privateCreator") == "ACME 1.0"
    assert by_tag["00091001"].get("keyword") is None
    assert by_tag["00091001"].findtext("Value") == "1.5"
    assert (
        base64.b64decode(by_tag["00091002"].findtext("InlineBinary") or "") == b"\x01\x02\x03\x04"
    )
    values = by_tag["00080008"].findall("Value")
    assert [(v.get("number"), v.text) for v in values] == [
        ("1", "ORIGINAL"),
        ("2", None),
        ("3", "AXIAL"),
    ]
    item = by_tag["00082218"].find("Item")
    assert item is not None
    assert item.get("number") == "1"
    assert item.findtext("DicomAttribute[@tag='00080100']/Value") == "T-A0100"

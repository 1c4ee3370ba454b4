"""Matches written as C-FIND response identifiers (PS3.4 §C.4.1.2.2; DIMSE-10)."""

from collections.abc import Mapping
from typing import Any

from pydicom.dataset import Dataset

from app.dicom.dimse_query.charsets import response_character_set
from app.dicom.dimse_query.identifiers import FindRequest

__all__ = ["match_identifier"]


def _item(item: Mapping[str, Any], keep: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if key in keep}


def _without_bulk(element: Mapping[str, Any]) -> dict[str, Any]:
    """An element as a match carries it: bulk data is not sent in a C-FIND (only its VR)."""
    if "BulkDataURI" in element:
        return {"vr": element.get("vr", "UN")}
    return dict(element)


def match_identifier(
    obj: Mapping[str, Any], request: FindRequest, retrieve_ae_title: str
) -> Dataset:
    """One match as its C-FIND response identifier (DIMSE-10): the request's keys filled from
    the DICOM JSON object the search gave (empty when it has no value), QueryRetrieveLevel,
    RetrieveAETitle (our AE), InstanceAvailability and SpecificCharacterSet (the request's when
    it can encode the values, else ISO_IR 192).

    >>> from app.dicom.dimse_query import Model, parse_find
    >>> ds = Dataset(); ds.QueryRetrieveLevel = "STUDY"; ds.PatientName = ""
    >>> request = parse_find(ds, Model.STUDY_ROOT)
    >>> obj = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}]},
    ...        "0020000D": {"vr": "UI", "Value": ["1.2.3"]}}
    >>> answer = match_identifier(obj, request, "LIGHTBOX")
    >>> str(answer.PatientName), answer.StudyInstanceUID, answer.SpecificCharacterSet
    ('Müller^Jürgen', '1.2.3', 'ISO_IR 192')
    """
    out: dict[str, Any] = {}
    for key in request.keys:
        name = f"{key.tag:08X}"
        element = obj.get(name)
        if element is None:
            out[name] = {"vr": key.vr}
        elif key.items:
            keep = frozenset(f"{t:08X}" for t in key.items)
            items = [_item(i, keep) for i in element.get("Value", ())]
            out[name] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        else:
            out[name] = _without_bulk(element)
    for name in ("00080005", "00080052", "00080054", "00080056"):
        out.pop(name, None)
    ds = Dataset.from_json(out)
    ds.QueryRetrieveLevel = request.level.value
    ds.RetrieveAETitle = retrieve_ae_title
    ds.InstanceAvailability = "ONLINE"
    charset = response_character_set(ds, request.character_sets)
    ds.SpecificCharacterSet = list(charset) if len(charset) > 1 else (charset[0] if charset else "")
    return ds

"""Matches written as C-FIND response identifiers (PS3.4 §C.4.1.2.2; DIMSE-10)."""

from collections.abc import Mapping
from typing import Any, Final

from app.dicom.dimse_query.charsets import response_character_set
from app.dicom.dimse_query.encoding import encode_elements
from app.dicom.dimse_query.identifiers import FindRequest

__all__ = ["IMPLICIT_VR_LITTLE_ENDIAN", "SYNTAXES", "match_identifier"]

IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
#: the syntaxes of the Query/Retrieve contexts: (implicit VR, little endian)
SYNTAXES: Final = {
    IMPLICIT_VR_LITTLE_ENDIAN: (True, True),
    "1.2.840.10008.1.2.1": (False, True),
    "1.2.840.10008.1.2.2": (False, False),
}


def _item(item: Mapping[str, Any], keep: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if key in keep}


def _without_bulk(element: Mapping[str, Any]) -> dict[str, Any]:
    """An element as a match carries it: bulk data is not sent in a C-FIND (only its VR)."""
    if "BulkDataURI" in element:
        return {"vr": element.get("vr", "UN")}
    return dict(element)


def match_identifier(
    obj: Mapping[str, Any],
    request: FindRequest,
    retrieve_ae_title: str,
    transfer_syntax: str = IMPLICIT_VR_LITTLE_ENDIAN,
) -> bytes:
    """One match as its C-FIND response identifier (DIMSE-10), encoded in ``transfer_syntax``
    (the C-FIND's presentation context): the request's keys filled from the DICOM JSON object
    the search gave (empty when it has no value), QueryRetrieveLevel, RetrieveAETitle (our AE),
    InstanceAvailability and SpecificCharacterSet (the request's when it can encode the values,
    else ISO_IR 192).

    >>> from io import BytesIO
    >>> from pydicom import Dataset
    >>> from pydicom.filereader import read_dataset
    >>> from app.dicom.dimse_query import Model, parse_find
    >>> ds = Dataset(); ds.QueryRetrieveLevel = "STUDY"; ds.PatientName = ""
    >>> request = parse_find(ds, Model.STUDY_ROOT)
    >>> obj = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}]},
    ...        "0020000D": {"vr": "UI", "Value": ["1.2.3"]}}
    >>> data = match_identifier(obj, request, "LIGHTBOX")
    >>> answer = read_dataset(BytesIO(data), True, True)
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
    out["00080052"] = {"vr": "CS", "Value": [request.level.value]}
    out["00080054"] = {"vr": "AE", "Value": [retrieve_ae_title]}
    out["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}
    out.pop("00080005", None)
    charset = response_character_set(out, request.character_sets)
    out["00080005"] = {"vr": "CS", "Value": list(charset)} if charset else {"vr": "CS"}
    syntax = SYNTAXES.get(transfer_syntax)
    if syntax is None:
        raise ValueError(f"a C-FIND context in {transfer_syntax} cannot be answered")
    return encode_elements(out, charset, implicit=syntax[0], little=syntax[1])

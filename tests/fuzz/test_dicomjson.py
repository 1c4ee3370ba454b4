"""Round trips of DICOM JSON and XML, and the STOW-RS metadata reader on any input.

Written by :func:`app.dicom.dicomjson.dataset_to_dict` (and :func:`app.dicom.dicomxml.to_xml`),
read back by pydicom, by :func:`app.dicom.dicomxml.from_xml` and by the STOW-RS reader
(:func:`app.dicom.stowjson.build_instance`, then :func:`app.dicom.parse.parse_instance`), a data
set gives the same DICOM JSON; malformed metadata is refused with the reader's own error only.
"""

from typing import Any

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from app.dicom.dicomjson import dataset_to_dict
from app.dicom.dicomxml import XmlError, from_xml, to_xml
from app.dicom.parse import parse_instance
from app.dicom.stowjson import BulkPart, StowJsonError, build_instance
from tests.fuzz.outcome import outcome
from tests.fuzz.strategies import datasets

BASE = "/studies/1/series/2/instances/3"
#: every binary value inline: nothing to bind to bulk data parts
INLINE = 1 << 10


def _json(ds: Dataset) -> dict[str, Any]:
    return dataset_to_dict(ds, base_path=BASE, inline_binary_max=INLINE)


def _float32(obj: Any) -> Any:
    """FL values as the float32 they stand for: a value read from a file is written as the
    shortest decimal of its float32 (0.1), one set in memory as the double it holds (the same
    float32); both read back as the same FL."""
    if isinstance(obj, list):
        return [_float32(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if obj.get("vr") == "FL" and "Value" in obj:
        return {**obj, "Value": [float(np.float32(v)) for v in obj["Value"]]}
    return {key: _float32(value) for key, value in obj.items()}


@given(datasets())
def test_json_read_back_by_pydicom_writes_the_same(ds: Dataset) -> None:
    obj = _json(ds)
    assert _json(Dataset.from_json(orjson.loads(orjson.dumps(obj)))) == obj


@given(datasets())
def test_xml_reads_back_as_the_same_json(ds: Dataset) -> None:
    obj = orjson.loads(orjson.dumps(_json(ds)))
    assert from_xml(to_xml(obj)) == obj


@given(datasets())
def test_stow_json_stores_what_the_json_says(ds: Dataset) -> None:
    obj = orjson.loads(orjson.dumps(_json(ds)))
    raw = build_instance(obj, {})
    parsed = parse_instance(raw, base_path_template=BASE, inline_binary_max=INLINE)
    stored = orjson.loads(parsed.metadata_json)
    assert _float32({tag: stored[tag] for tag in obj}) == _float32(obj)


#: DICOM JSON-like attribute objects: right and wrong keys, VRs and values
_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
_json_value = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_vrs = (
    st.sampled_from(
        [
            *("AE", "AT", "CS", "DA", "DS", "FD", "FL", "IS", "LO", "OB", "OW", "PN", "SQ"),
            *("SS", "SV", "TM", "UI", "UL", "UN", "US", "UT", "UV", "ZZ", "US or SS", ""),
        ]
    )
    | _json_value
)
_attribute = st.fixed_dictionaries(
    {"vr": _vrs},
    optional={
        "Value": st.lists(_json_value, max_size=3) | _json_value,
        "InlineBinary": st.text(alphabet="QUJDRA==", max_size=12) | _json_value,
        "BulkDataURI": st.sampled_from(["bulk/1", "bulk/2", "missing"]) | _json_value,
    },
)
_keys = st.sampled_from(
    [
        *("00100010", "00280010", "00280008", "00080005", "0040A730", "7FE00010", "00020010"),
        *("00091010", "00200013", "00181030", "fffee000"),
    ]
) | st.text(max_size=9)
_UIDS = {
    "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.7"]},
    "00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
    "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
    "0020000E": {"vr": "UI", "Value": ["1.2.3.5"]},
}
_bulk = st.fixed_dictionaries(
    {},
    optional={
        uri: st.builds(
            BulkPart,
            st.sampled_from(
                ["", "application/octet-stream", "image/jpeg", "image/png", "video/mp4"]
            ),
            st.binary(max_size=64),
            st.none() | st.sampled_from(["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1", "x"]),
        )
        for uri in ("bulk/1", "bulk/2")
    },
)


@given(st.dictionaries(_keys, _attribute | _json_value, max_size=4), _bulk)
def test_any_metadata_is_an_instance_or_a_stow_json_error(
    extra: dict[str, Any], bulk: dict[str, BulkPart]
) -> None:
    raw = outcome(lambda: build_instance({**_UIDS, **extra}, bulk), StowJsonError)
    if isinstance(raw, Exception):
        # a reason in one line: no traceback, no value (pydicom's messages have both)
        assert str(raw)
        assert "\n" not in str(raw)
    else:
        assert raw[128:132] == b"DICM"


@given(datasets(), st.data())
def test_damaged_xml_is_read_or_refused_with_xml_error(ds: Dataset, data: st.DataObject) -> None:
    document = bytearray(to_xml(orjson.loads(orjson.dumps(_json(ds)))))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        at = data.draw(st.integers(min_value=0, max_value=len(document) - 1))
        document[at : at + data.draw(st.integers(0, 8))] = data.draw(st.binary(max_size=8))
    read = outcome(lambda: from_xml(bytes(document)), XmlError)
    assert isinstance(read, dict | XmlError)

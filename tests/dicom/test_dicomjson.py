"""DICOM JSON (PS3.18 Annex F) rules JSON-01..10 and META-02..04, on hand-made data sets.

Every case runs twice: on the data set as built in memory, and on the same data set written as a
PS3.10 file and read back (the still-encoded path ingest uses).
"""

import base64
import io
import struct
from collections.abc import Callable
from typing import Any

import orjson
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from app.dicom.dicomjson import dataset_to_dict, dataset_to_json, select
from tests.corpus import charset_files
from tests.factories import make_dataset, to_bytes

BASE = "/studies/1/series/2/instances/3"
Convert = Callable[..., dict[str, Any]]


def _in_memory(ds: Dataset, **kwargs: Any) -> dict[str, Any]:
    return dataset_to_dict(ds, base_path=BASE, **kwargs)


def _from_file(ds: Dataset, **kwargs: Any) -> dict[str, Any]:
    read = pydicom.dcmread(io.BytesIO(to_bytes(ds)), defer_size=4096)
    little = ds.file_meta.TransferSyntaxUID != ExplicitVRBigEndian
    return dataset_to_dict(read, base_path=BASE, little_endian=little, **kwargs)


@pytest.fixture(params=[_in_memory, _from_file], ids=["memory", "file"])
def convert(request: pytest.FixtureRequest) -> Convert:
    fn: Convert = request.param
    return fn


def test_keys_sorted_upper_hex_and_vr_always(convert: Convert) -> None:  # JSON-01
    ds = make_dataset(StudyDescription="x", SeriesDescription="y")
    ds.add_new(0x00291010, "LO", "private")
    ds.add_new(0x00290010, "LO", "ACME 1.0")
    out = convert(ds)
    keys = list(out)
    assert keys == sorted(keys)
    assert all(len(k) == 8 and k == k.upper() for k in keys)
    assert all("vr" in v for v in out.values())
    assert all(len({"Value", "BulkDataURI", "InlineBinary"} & set(v)) <= 1 for v in out.values())


def test_file_meta_and_group_lengths_excluded(convert: Convert) -> None:  # META-02
    ds = make_dataset()
    ds.add_new(0x00080000, "UL", 123)
    out = convert(ds)
    assert not any(k.startswith("0002") or k.endswith("0000") for k in out)


def test_vr_json_types(convert: Convert) -> None:  # JSON-02
    ds = make_dataset()
    ds.add_new(0x00181310, "US", [0, 256, 256, 0])  # AcquisitionMatrix
    ds.add_new(0x00209241, "FL", 0.1)  # NominalCardiacTriggerTimePriorToRPeak
    ds.add_new(0x0018605A, "FL", [1.5, -2.0])  # TableOfParameterValues
    ds.add_new(0x00189219, "FD", 2.5)  # TagAngleSecondAxis
    ds.add_new(0x00209165, "AT", [0x00100010, 0x7FE00010])  # DimensionIndexPointer
    ds.add_new(0x00280106, "US", 5)  # SmallestImagePixelValue
    ds.add_new(0x00720062, "SL", [-5])  # SelectorSLValue
    out = convert(ds)
    assert out["00181310"] == {"vr": "US", "Value": [0, 256, 256, 0]}
    assert out["00209241"] == {"vr": "FL", "Value": [0.1]}
    assert out["0018605A"] == {"vr": "FL", "Value": [1.5, -2.0]}
    assert out["00189219"] == {"vr": "FD", "Value": [2.5]}
    assert out["00209165"] == {"vr": "AT", "Value": ["00100010", "7FE00010"]}
    assert out["00720062"] == {"vr": "SL", "Value": [-5]}
    assert out["00080016"]["Value"] == [ds.SOPClassUID]


def test_is_ds_are_numbers(convert: Convert) -> None:  # JSON-03
    ds = make_dataset(
        SliceThickness="1.50",
        InstanceNumber="007",
        ImagePositionPatient=["-1.5", "2e2", "3"],
        PixelSpacing=["0.5", "0.5"],
    )
    out = convert(ds)
    assert out["00180050"]["Value"] == [1.5]
    assert out["00200013"]["Value"] == [7]
    assert out["00200032"]["Value"] == [-1.5, 200.0, 3]
    assert orjson.dumps(out["00180050"]) == b'{"vr":"DS","Value":[1.5]}'


def test_invalid_is_ds_stay_strings() -> None:  # JSON-03
    ds = make_dataset(SliceThickness="9.87654", InstanceNumber="12345", SpacingBetweenSlices="3.21")
    data = to_bytes(ds)
    for good, bad in ((b"9.87654 ", b"abcdefg "), (b"12345 ", b"1_000 "), (b"3.21", b"NaN ")):
        assert data.count(good) == 1
        data = data.replace(good, bad)
    out = dataset_to_dict(pydicom.dcmread(io.BytesIO(data)), base_path=BASE)
    assert out["00180050"]["Value"] == ["abcdefg"]
    assert out["00200013"]["Value"] == ["1_000"]
    assert out["00180088"]["Value"] == ["NaN"]


def test_non_finite_floats_are_strings(convert: Convert) -> None:  # JSON-03
    ds = make_dataset()
    ds.add_new(0x0018605A, "FL", [float("nan"), float("inf")])
    ds.add_new(0x00189219, "FD", float("-inf"))
    out = convert(ds)
    assert out["0018605A"]["Value"] == ["NaN", "Infinity"]
    assert out["00189219"]["Value"] == ["-Infinity"]


def test_person_names(convert: Convert) -> None:  # JSON-04
    ds = make_dataset(
        PatientName="Yamada^Tarou^^^=山田^太郎=やまだ^たろう",
        ReferringPhysicianName="",
        OtherPatientNames=["Doe^Jane", "", "=Ideo"],
        SpecificCharacterSet="ISO_IR 192",
    )
    out = convert(ds)
    assert out["00100010"]["Value"] == [
        {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    ]
    assert out["00080090"] == {"vr": "PN"}
    assert out["00101001"]["Value"] == [{"Alphabetic": "Doe^Jane"}, None, {"Ideographic": "Ideo"}]


def test_multiplicity_and_empty_values(convert: Convert) -> None:  # JSON-05/06
    ds = make_dataset(
        ImageType=["ORIGINAL", "", "AXIAL"],
        AccessionNumber="",
        StudyDescription="a\\b",  # LO: backslash splits
        ImageComments="line 1\\line 2",  # LT: never split
        StudyTime="1015 ",  # padding stripped, text kept
    )
    out = convert(ds)
    assert out["00080008"]["Value"] == ["ORIGINAL", None, "AXIAL"]
    assert out["00080050"] == {"vr": "SH"}
    assert out["00081030"]["Value"] == ["a", "b"]
    assert out["00204000"]["Value"] == ["line 1\\line 2"]
    assert out["00080030"]["Value"] == ["1015"]


def test_sequences(convert: Convert) -> None:  # JSON-07
    item = Dataset()
    item.PatientID = "OTHER"
    ds = make_dataset(
        OtherPatientIDsSequence=Sequence([item, Dataset()]),
        ReferencedStudySequence=Sequence([]),
    )
    out = convert(ds)
    assert out["00101002"] == {
        "vr": "SQ",
        "Value": [{"00100020": {"vr": "LO", "Value": ["OTHER"]}}, {}],
    }
    assert out["00081110"] == {"vr": "SQ"}


def test_private_elements_keep_vr(convert: Convert) -> None:  # JSON-08
    ds = make_dataset()
    block = ds.private_block(0x0009, "LIGHTBOX TEST", create=True)
    block.add_new(0x01, "SH", "hello")
    block.add_new(0x02, "US", 42)
    out = convert(ds)
    assert out["00090010"] == {"vr": "LO", "Value": ["LIGHTBOX TEST"]}
    assert out["00091001"] == {"vr": "SH", "Value": ["hello"]}
    assert out["00091002"] == {"vr": "US", "Value": [42]}


def test_unknown_implicit_private_is_un() -> None:  # JSON-08
    ds = make_dataset(ImplicitVRLittleEndian)
    block = ds.private_block(0x0009, "LIGHTBOX TEST", create=True)
    block.add_new(0x01, "SH", "hello")
    out = _from_file(ds)
    assert out["00091001"] == {"vr": "UN", "BulkDataURI": f"{BASE}/bulkdata/00091001"}
    inline = _from_file(ds, inline_binary_max=64)
    assert base64.b64decode(inline["00091001"]["InlineBinary"]) == b"hello "


def test_bulk_data_and_inline_binary(convert: Convert) -> None:  # META-03/04, JSON-09
    item = Dataset()
    item.add_new(0x00189219, "FD", 1.0)
    item.add_new(0x00282000, "OB", b"\x01\x02")  # ICCProfile, nested
    ds = make_dataset(
        IconImageSequence=Sequence([item]),
        EncapsulatedDocument=b"%PDF",
    )
    ds.add_new(0x00283006, "OW", struct.pack("<3H", 1, 2, 3))  # LUTData
    out = convert(ds)
    assert out["7FE00010"] == {"vr": "OW", "BulkDataURI": f"{BASE}/bulkdata/7FE00010"}
    assert out["00420011"]["BulkDataURI"] == f"{BASE}/bulkdata/00420011"
    assert out["00283006"]["BulkDataURI"] == f"{BASE}/bulkdata/00283006"
    nested = out["00880200"]["Value"][0]["00282000"]
    assert nested == {"vr": "OB", "BulkDataURI": f"{BASE}/bulkdata/00880200/0/00282000"}

    out = convert(ds, inline_binary_max=1024)
    assert out["7FE00010"]["BulkDataURI"].endswith("/7FE00010")  # always bulk
    assert out["00420011"]["BulkDataURI"].endswith("/00420011")
    assert base64.b64decode(out["00283006"]["InlineBinary"]) == struct.pack("<3H", 1, 2, 3)
    assert out["00880200"]["Value"][0]["00282000"] == {"vr": "OB", "InlineBinary": "AQI="}


def test_inline_binary_is_little_endian_for_big_endian_files() -> None:  # JSON-09
    ds = make_dataset(ExplicitVRBigEndian, rows=2, columns=2)
    ds.add_new(0x00283006, "OW", struct.pack(">3H", 1, 2, 3))
    out = _from_file(ds, inline_binary_max=1024)
    assert base64.b64decode(out["00283006"]["InlineBinary"]) == struct.pack("<3H", 1, 2, 3)
    assert out["00280010"]["Value"] == [2]


def test_utf8_json_and_charset_kept(convert: Convert) -> None:  # JSON-10
    ds = make_dataset(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Jürgen")
    out = convert(ds)
    assert out["00080005"]["Value"] == ["ISO_IR 100"]
    text = dataset_to_json(ds, base_path=BASE).decode("utf-8")
    assert "Müller^Jürgen" in text


def test_subset_of_tags(convert: Convert) -> None:
    out = convert(make_dataset(), tags={0x00100010, 0x00080060})
    assert list(out) == ["00080060", "00100010"]
    assert select(out, lambda tag: tag == 0x00080060) == {"00080060": out["00080060"]}


def test_little_endian_and_big_endian_files_agree() -> None:
    ds = make_dataset(ImagePositionPatient=["1", "2", "3"], PatientName="A^B")
    ds.add_new(0x00209165, "AT", [0x00100010])
    little = _from_file(ds)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    big = _from_file(ds)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    assert little == big


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("chrH31.dcm", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        ("chrH32.dcm", "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"),
        ("chrX1.dcm", "Wang^XiaoDong=王^小東"),
        ("chrX2.dcm", "Wang^XiaoDong=王^小东"),
        ("chrArab.dcm", "قباني^لنزار"),
        ("chrGreek.dcm", "Διονυσιος"),
        ("chrRuss.dcm", "Люкceмбypг"),  # noqa: RUF001 (mixed scripts in the file)
        ("chrFren.dcm", "Buc^Jérôme"),
        ("chrGerm.dcm", "Äneas^Rüdiger"),
        ("chrHbrw.dcm", "שרון^דבורה"),
        ("chrI2.dcm", "Hong^Gildong=洪^吉洞=홍^길동"),
        ("chrKoreanMulti.dcm", "김희중"),
        ("chrJapMulti.dcm", "やまだ^たろう"),
    ],
)
def test_character_sets(name: str, expected: str) -> None:  # CS-01
    path = str(next(f for f in charset_files() if f.name == name))
    ds = pydicom.dcmread(path, defer_size=4096)
    value = dataset_to_dict(ds, base_path=BASE)["00100010"]["Value"][0]
    groups = [value.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
    while groups and not groups[-1]:
        groups.pop()
    name_text = "=".join(groups)
    assert name_text == expected
    # agrees with pydicom's own decoding
    reference = pydicom.dcmread(path)
    assert name_text == "=".join(str(c) for c in reference.PatientName.components).rstrip("=")


def test_nested_character_set() -> None:
    path = str(next(f for f in charset_files() if f.name == "chrSQEncoding.dcm"))
    ds = pydicom.dcmread(path, defer_size=4096)
    reference = pydicom.dcmread(path)
    out = dataset_to_dict(ds, base_path=BASE)
    seq = next(v for v in out.values() if v["vr"] == "SQ")
    names = [
        item[k]["Value"][0]
        for item in seq["Value"]
        for k in item
        if item[k]["vr"] == "PN" and "Value" in item[k]
    ]
    expected = [
        str(item[elem.tag].value.components[0])
        for seq_elem in reference
        if seq_elem.VR == "SQ"
        for item in seq_elem.value
        for elem in item
        if elem.VR == "PN" and elem.value
    ]
    assert [n["Alphabetic"] for n in names] == expected

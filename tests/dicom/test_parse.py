"""parse_instance: STOW-06 checks, corpus robustness, fields and level JSON."""

import io
import os
import zlib
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from app.dicom.parse import parse_instance
from app.errors import InstanceRejected, InvalidInstance, OutOfResources, TransferSyntaxNotSupported
from tests.corpus import corpus, corpus_path
from tests.corpus_edge import EDGES
from tests.factories import make_dataset, to_bytes

CORPUS = [str(f) for f in corpus()]


def test_corpus_includes_pydicom_data() -> None:
    assert any("data_store" in f for f in CORPUS)  # pydicom-data is installed and listed
    assert len(CORPUS) > 250


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: Path(p).name)
def test_corpus_parses_or_is_rejected(path: str) -> None:
    data = Path(path).read_bytes()
    try:
        parsed = parse_instance(data)
    except InstanceRejected:
        return
    orjson.loads(parsed.metadata_json)
    for level in (parsed.study_json, parsed.series_json, parsed.instance_json):
        assert set(orjson.loads(level)) <= set(orjson.loads(parsed.metadata_json))
    # a file object gives the same result as bytes
    with open(path, "rb") as fp:
        assert parse_instance(fp) == parsed


def test_fields_and_level_json() -> None:
    item = Dataset()
    item.ScheduledProcedureStepID = "SPS1"
    item.RequestedProcedureID = "RP1"
    ds = make_dataset(
        rows=2,
        columns=2,
        InstanceNumber="7",
        SpecificCharacterSet=["", "ISO 2022 IR 87"],
        PatientName="Yamada^Tarou",
        PatientBirthDate="19700101",
        PatientSex="M",
        StudyDate="2024.01.15",
        StudyTime="10:15:30",
        AccessionNumber="ACC",
        TimezoneOffsetFromUTC="+0100",
        SeriesDate="20240116",
        SeriesTime="1016",
        PerformedProcedureStepStartDate="20240115",
        PerformedProcedureStepStartTime="1015",
        RequestAttributesSequence=Sequence([item]),
        SeriesNumber="98765",
        BodyPartExamined="CHEST",
    )
    data = to_bytes(ds).replace(b"98765 ", b"junk! ")  # an IS value pydicom would not accept
    parsed = parse_instance(data)
    study, series, instance = parsed.study, parsed.series, parsed.instance
    assert study.study_uid == ds.StudyInstanceUID == parsed.study_uid
    assert study.patient_name == "Yamada^Tarou"
    assert study.patient_birth_date == date(1970, 1, 1)
    assert study.study_date == date(2024, 1, 15)
    assert study.study_time == "101530.000000"
    assert study.timezone_offset == "+0100"
    assert study.specific_character_set == "\\ISO 2022 IR 87"
    assert series.series_number is None  # junk IS
    assert series.series_time == "101600.000000"
    assert series.pps_start_date == date(2024, 1, 15)
    assert series.scheduled_procedure_step_ids == ("SPS1",)
    assert series.requested_procedure_ids == ("RP1",)
    assert series.body_part_examined == "CHEST"
    assert instance.instance_number == 7
    assert (instance.rows, instance.columns, instance.bits_allocated) == (2, 2, 16)
    assert instance.number_of_frames == 1
    study_json = orjson.loads(parsed.study_json)
    series_json = orjson.loads(parsed.series_json)
    instance_json = orjson.loads(parsed.instance_json)
    assert {"00100010", "00100030", "0020000D", "00080005", "00080201"} <= set(study_json)
    assert "00080060" not in study_json
    assert {"00080060", "0020000E", "00400275", "00080005"} <= set(series_json)
    assert {"00080018", "00280010", "00080005"} <= set(instance_json)
    assert "7FE00010" not in instance_json
    uri = orjson.loads(parsed.metadata_json)["7FE00010"]["BulkDataURI"]
    assert uri == (
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/bulkdata/7FE00010"
    )


def test_no_pixel_data_means_no_frames() -> None:
    parsed = parse_instance(to_bytes(make_dataset(PixelData=None)))
    assert parsed.frames is None
    assert parsed.instance.number_of_frames is None


@pytest.mark.parametrize(
    "keyword", ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]
)
@pytest.mark.parametrize("value", [None, "../../x", "1.02.3", "1.2\\1.3"])
def test_required_uids(keyword: str, value: str | None) -> None:
    overrides: dict[str, Any] = {keyword: value}
    ds = make_dataset(**overrides)
    with pytest.raises(InvalidInstance, match=keyword.replace("SOPClassUID", "SOPClassUID")):
        parse_instance(to_bytes(ds))


def test_media_storage_uid_mismatch() -> None:
    ds = make_dataset()
    uid = ds.SOPInstanceUID.encode()
    other = uid[:-1] + (b"1" if uid[-1:] != b"1" else b"2")
    data = to_bytes(ds).replace(uid, other, 1)  # the first occurrence is in the File Meta
    with pytest.raises(InvalidInstance, match="MediaStorageSOPInstanceUID"):
        parse_instance(data)


def test_transfer_syntax_checks() -> None:
    data = to_bytes(make_dataset()).replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.99999.1.2.1\0", 1)
    with pytest.raises(TransferSyntaxNotSupported) as info:
        parse_instance(data)
    assert info.value.dimse_status == 0xC122
    with pytest.raises(InvalidInstance, match="TransferSyntaxUID"):
        parse_instance(Path(corpus_path("meta_missing_tsyntax.dcm")).read_bytes())


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage", bytes(128) + b"DICM", bytes(128) + b"DICM" + os.urandom(200), b"\0" * 300],
    ids=["empty", "text", "prefix-only", "random", "zeros"],
)
def test_not_dicom(data: bytes) -> None:
    with pytest.raises(InvalidInstance):
        parse_instance(data)


def test_no_preamble_is_refused() -> None:
    with pytest.raises(InvalidInstance, match=r"PS3\.10"):
        parse_instance(Path(corpus_path("no_meta.dcm")).read_bytes())


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.9, 0.999])
def test_truncated(cut: float) -> None:
    data = Path(corpus_path("CT_small.dcm")).read_bytes()
    with pytest.raises(InvalidInstance):
        parse_instance(data[: int(len(data) * cut)])


def test_truncated_encapsulated() -> None:
    data = Path(corpus_path("SC_rgb_rle_2frame.dcm")).read_bytes()
    with pytest.raises(InvalidInstance):
        parse_instance(data[:-100])


def test_deflated() -> None:
    ds = make_dataset(DeflatedExplicitVRLittleEndian, PatientName="Deflated^Test")
    parsed = parse_instance(to_bytes(ds))
    assert parsed.study.patient_name == "Deflated^Test"
    assert parsed.instance.transfer_syntax_uid == DeflatedExplicitVRLittleEndian
    assert parsed.frames is None  # frames are not byte ranges of the stored file
    assert parsed.instance.number_of_frames == 1


def test_deflate_bomb() -> None:
    ds = make_dataset(
        DeflatedExplicitVRLittleEndian, Rows=1024, Columns=1024, PixelData=bytes(1 << 21)
    )
    data = to_bytes(ds)
    assert len(data) < 10_000
    with pytest.raises(OutOfResources, match="inflates"):
        parse_instance(data, max_inflated_bytes=1 << 20)
    assert parse_instance(data, max_inflated_bytes=1 << 22).frames is None


def test_truncated_deflate_stream() -> None:
    data = to_bytes(make_dataset(DeflatedExplicitVRLittleEndian, PixelData=os.urandom(4096)))
    with pytest.raises(InvalidInstance):
        parse_instance(data[:-1000])


def test_corrupt_deflate_stream() -> None:
    ds = make_dataset(DeflatedExplicitVRLittleEndian)
    data = to_bytes(ds)
    meta_end = (
        data.index(DeflatedExplicitVRLittleEndian.encode())
        + len(DeflatedExplicitVRLittleEndian)
        + 1
    )
    with pytest.raises(InvalidInstance):
        parse_instance(data[:meta_end] + zlib.compress(b"\xff" * 100)[::-1])


def test_implicit_vr_file() -> None:
    parsed = parse_instance(to_bytes(make_dataset(ImplicitVRLittleEndian)))
    assert orjson.loads(parsed.metadata_json)["7FE00010"]["vr"] == "OW"


def test_file_object_at_offset() -> None:
    data = to_bytes(make_dataset(rows=2, columns=2, PixelData=bytes(range(8))))
    fp = io.BytesIO(b"JUNK" + data)
    fp.seek(4)
    parsed = parse_instance(fp)
    assert parsed.frames is not None
    ((offset, length),) = parsed.frames.ranges[0]
    assert data[offset : offset + length] == bytes(range(8))


def test_file_meta_without_preamble_is_accepted() -> None:
    """dicomweb-client sends parts as File Meta + data set, with no preamble and no DICM."""
    raw = to_bytes(make_dataset())
    assert raw[128:132] == b"DICM"
    parsed = parse_instance(raw[132:])
    assert parsed.sop_uid == parse_instance(raw).sop_uid
    frames = parsed.frames
    assert frames is not None
    [[(offset, length)]] = frames.ranges
    assert raw[132:][offset : offset + length] == make_dataset().PixelData


def test_the_index_fields_of_the_edges() -> None:
    """What the index is given: text without NUL, integers within 64 bits, dates parsed."""
    fields = {edge.name: parse_instance(to_bytes(edge.build())) for edge in EDGES}
    assert fields["NUL in PatientName"].study.patient_name == "Nul\ufffd^Jane"
    assert fields["NUL in PatientID"].study.patient_id == "P\ufffdID"
    assert fields["IS given as FD beyond 64 bits"].instance.instance_number is None
    assert fields["US made UL by its explicit VR"].instance.rows == 4_000_000_000
    assert fields["long TimezoneOffsetFromUTC"].study.timezone_offset is None
    assert fields["StudyDate that is no date"].study.study_date is None
    assert str(fields["ACR-NEMA StudyDate, year 1 and year 9999"].study.patient_birth_date) == (
        "0001-01-01"
    )

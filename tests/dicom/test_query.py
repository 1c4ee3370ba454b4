"""The pure matching engine: parse_qido per resource (QIDO-01..17), no database."""

from datetime import date

import pytest

from app.dicom.query import (
    DateRange,
    DateTimeRange,
    FuzzyName,
    Number,
    Resource,
    Single,
    TimeRange,
    Universal,
    ValueList,
    Wildcard,
    parse_qido,
)
from app.errors import BadRequest


@pytest.mark.parametrize(
    ("resource", "allowed", "ignored"),
    [
        (Resource.STUDIES, ["PatientID", "StudyDate"], ["Modality", "SOPClassUID"]),
        (Resource.STUDY_SERIES, ["PatientID", "Modality"], ["StudyDate", "SOPClassUID"]),
        (Resource.SERIES, ["PatientID", "StudyDate", "Modality"], ["SOPClassUID"]),
        (Resource.STUDY_INSTANCES, ["PatientID", "Modality", "SOPClassUID"], ["StudyDate"]),
        (Resource.SERIES_INSTANCES, ["PatientID", "SOPClassUID"], ["StudyDate", "Modality"]),
        (Resource.INSTANCES, ["PatientID", "StudyDate", "Modality", "SOPClassUID"], []),
    ],
)
def test_level_rules(resource: Resource, allowed: list[str], ignored: list[str]) -> None:
    """QIDO-03: which keys each resource matches on; the others are named in a warning."""
    values = {"PatientID": "P", "StudyDate": "20240101", "Modality": "CT"}
    values["SOPClassUID"] = "1.2.840.10008.5.1.4.1.1.2"
    query = parse_qido([(k, values[k]) for k in allowed + ignored], resource=resource)
    assert sorted(query.filters) == sorted(allowed)
    if ignored:
        assert query.warnings == (
            "Ignored attributes not supported at this level: " + ", ".join(sorted(ignored)),
        )
    else:
        assert query.warnings == ()


def test_matchers_by_vr() -> None:
    query = parse_qido(
        [
            ("PatientName", "Doe^J*"),
            ("00100020", "P1"),
            ("SeriesInstanceUID", "1.2,1.3\\1.4"),
            ("SeriesNumber", "+3"),
            ("SeriesTime", "10"),
            ("PerformedProcedureStepStartDate", "20240101-"),
            ("ModalitiesInStudy", "CT\\MR"),
            ("SeriesDescription", ""),
            ("RequestAttributesSequence.ScheduledProcedureStepID", "S?1"),
        ],
        resource=Resource.SERIES,
    )
    f = query.filters
    assert f["PatientName"] == Wildcard("Doe^J*")
    assert f["PatientID"] == Single("P1")
    assert f["SeriesInstanceUID"] == ValueList(("1.2", "1.3", "1.4"))
    assert f["SeriesNumber"] == Number(3)
    assert f["SeriesTime"] == TimeRange("100000.000000", "105959.999999")
    assert f["PerformedProcedureStepStartDate"] == DateRange(date(2024, 1, 1), None)
    assert f["ModalitiesInStudy"] == ValueList(("CT", "MR"))
    assert f["SeriesDescription"] == Universal()
    assert f["RequestAttributesSequence.ScheduledProcedureStepID"] == Wildcard("S?1")
    assert 0x0008103E in query.include  # universal match keys are returned (QIDO-08)


def test_combined_date_time() -> None:
    """QIDO-11: a DA and a TM range of one pair are one date-time range."""
    query = parse_qido([("StudyDate", "20240101-20240102"), ("StudyTime", "2200-0600")])
    assert query.filters["StudyDate"] == DateTimeRange(
        (date(2024, 1, 1), "220000.000000"), (date(2024, 1, 2), "060059.999999"), "StudyTime"
    )
    assert query.filters["StudyTime"] == Universal()
    with pytest.raises(BadRequest, match="StudyTime"):
        parse_qido([("StudyTime", "2200-0600")])  # alone, a reversed range is an error
    with pytest.raises(BadRequest, match="StudyDate/StudyTime"):
        parse_qido([("StudyDate", "20240102-20240102"), ("StudyTime", "2200-0600")])


def test_fuzzy_names() -> None:
    query = parse_qido(
        [("PatientName", "jür MÜL"), ("ReferringPhysicianName", "*"), ("fuzzymatching", "true")]
    )
    assert query.filters["PatientName"] == FuzzyName(("JUR", "MUL"))
    assert query.filters["ReferringPhysicianName"] == Universal()
    assert query.fuzzy
    assert query.warnings == ()
    literal = parse_qido([("PatientName", "jür MÜL"), ("fuzzymatching", "false")])
    assert literal.filters["PatientName"] == Single("jür MÜL")


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ([("SeriesNumber", "one")], "SeriesNumber"),
        ([("StudyTime", "2561")], "StudyTime"),
        ([("SeriesDate", "2024")], "SeriesDate"),
        ([("SOPInstanceUID", "1.2.x")], "SOPInstanceUID"),
        ([("RequestAttributesSequence.NoSuchKeyword", "1")], "NoSuchKeyword"),
        ([("00400275.00400009", "1"), ("RequestAttributesSequence.00400009", "2")], "00400009"),
        ([("SOPInstanceUID", ",".join(["1.2"] * 1001))], "SOPInstanceUID"),
        ([("PatientID", "x" * 20_000)], "PatientID"),
        ([("fuzzymatching", "TRUE")], "fuzzymatching"),
        ([("emptyvaluematching", "1")], "emptyvaluematching"),
    ],
)
def test_errors_name_the_parameter(params: list[tuple[str, str]], named: str) -> None:
    with pytest.raises(BadRequest, match=named):
        parse_qido(params, resource=Resource.INSTANCES)


def test_includefield_levels() -> None:
    """QIDO-16: deeper levels are never returned; the resource's own levels are."""
    fields = [("includefield", "PatientAge,Modality,Rows,00081030,NoSuchThing")]
    assert parse_qido(fields, resource=Resource.STUDIES).include == {0x00101010, 0x00081030}
    assert parse_qido(fields, resource=Resource.STUDY_SERIES).include == {0x00080060}
    assert parse_qido(fields, resource=Resource.INSTANCES).include == {
        0x00101010,
        0x00080060,
        0x00280010,
        0x00081030,
    }

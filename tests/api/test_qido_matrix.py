"""QIDO-RS: every matching rule at every level, all six resources, on PostgreSQL and SQLite.

One synthetic archive (stored once per database through STOW-RS) answers a parametrized matrix
of (resource, query, expected results): QIDO-01/03/06..14 at the study, series and instance
levels; then return keys per resource (QIDO-21..26), paging, path UIDs and level warnings.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import MRImageStorage, generate_uid

from app.dicom.attributes import Level
from app.dicom.query import Resource, StudyRestriction, parse_qido
from app.services.container import Services
from tests.conftest import app_client, make_settings
from tests.factories import make_dataset, multipart, stow_headers, to_bytes

ROOT = "/dicom-web"
BASE = "http://t/dicom-web"

#: label -> UID, for studies (S*), series (S*x) and instances (S*x-n)
U: dict[str, str] = {}
for _label in ("S1", "S2", "S3", "S4", "S1a", "S1b", "S2a", "S3a", "S4a"):
    U[_label] = generate_uid()


def _ras(*items: tuple[str, str]) -> Sequence:
    out = []
    for sps, rp in items:
        item = Dataset()
        item.ScheduledProcedureStepID = sps
        item.RequestedProcedureID = rp
        out.append(item)
    return Sequence(out)


_STUDY: dict[str, dict[str, Any]] = {
    "S1": {
        "PatientName": "Müller^Jürgen",
        "PatientID": "PID-1",
        "StudyDate": "20240115",
        "StudyTime": "083000",
        "AccessionNumber": "A1",
        "StudyDescription": "CT HEAD",
    },
    "S2": {
        "PatientName": "Doe^John",
        "PatientID": "PID-2",
        "StudyDate": "20240116",
        "StudyTime": "070000",
        "AccessionNumber": "A2",
        "StudyDescription": "MR KNEE",
        "ReferringPhysicianName": "Wilson^James",
    },
    "S3": {
        "PatientName": "O'Brien^Zoë",
        "PatientID": "PID-3",
        "StudyDate": "20240116",
        "StudyTime": "230000",
        "AccessionNumber": "50%_x(y)",
        "StudyDescription": "US ABDOMEN",
    },
    "S4": {
        "SpecificCharacterSet": "ISO_IR 192",
        "PatientName": "Yamada^Tarou=山田^太郎",
        "PatientID": "PID-4",
        "StudyDate": "",
        "StudyTime": "",
        "AccessionNumber": "A4",
        "StudyDescription": "",
    },
}
_SERIES: dict[str, dict[str, Any]] = {
    "S1a": {
        "Modality": "CT",
        "SeriesNumber": 1,
        "SeriesDescription": "AXIAL",
        "SeriesDate": "20240115",
        "SeriesTime": "083500",
        "BodyPartExamined": "HEAD",
        "PerformedProcedureStepStartDate": "20240115",
        "PerformedProcedureStepStartTime": "0835",
        "RequestAttributesSequence": lambda: _ras(("SPS1", "RP1"), ("SPS2", "RP2")),
    },
    "S1b": {
        "Modality": "MR",
        "SeriesNumber": 2,
        "SeriesDescription": "SAG T1",
        "SeriesDate": "20240115",
        "SeriesTime": "120000",
        "BodyPartExamined": "HEAD",
        "SOPClassUID": MRImageStorage,
    },
    "S2a": {
        "Modality": "MR",
        "SeriesNumber": 1,
        "SeriesDescription": "COR PD",
        "SeriesDate": "20240116",
        "SeriesTime": "071000",
        "BodyPartExamined": "KNEE",
        "SOPClassUID": MRImageStorage,
        "RequestAttributesSequence": lambda: _ras(("SPS3", "RP3")),
    },
    "S3a": {"Modality": "US", "SeriesNumber": 1, "SeriesDescription": "ABD"},
    "S4a": {"Modality": "CT", "SeriesNumber": 7, "SeriesDescription": "AXIAL 2"},
}
#: instances per series: (label suffix, InstanceNumber, Rows)
_INSTANCES: dict[str, list[tuple[str, int, int]]] = {
    "S1a": [("1", 1, 8), ("2", 2, 8)],
    "S1b": [("1", 1, 16)],
    "S2a": [("1", 1, 8)],
    "S3a": [("1", 1, 8)],
    "S4a": [("1", 1, 8)],
}
for _series, _items in _INSTANCES.items():
    for _suffix, _, _ in _items:
        U[f"{_series}-{_suffix}"] = generate_uid()
LABEL = {uid: label for label, uid in U.items()}


def _datasets() -> list[Dataset]:
    out = []
    for series, items in _INSTANCES.items():
        study = series[:2]
        attrs: dict[str, Any] = {}
        attrs.update(_STUDY[study])
        attrs.update({k: v() if callable(v) else v for k, v in _SERIES[series].items()})
        for suffix, number, rows in items:
            out.append(
                make_dataset(
                    rows=rows,
                    columns=8,
                    StudyInstanceUID=U[study],
                    SeriesInstanceUID=U[series],
                    SOPInstanceUID=U[f"{series}-{suffix}"],
                    InstanceNumber=number,
                    **attrs,
                )
            )
    return out


@dataclass
class World:
    http: httpx.AsyncClient
    services: Services


@pytest_asyncio.fixture(scope="module")
async def world(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    settings = make_settings(database_url, tmp_path_factory.mktemp("qido-matrix"))
    async with app_client(settings) as (services, http):
        parts = [to_bytes(ds) for ds in _datasets()]
        response = await http.post(
            f"{ROOT}/studies", content=multipart(parts), headers=stow_headers()
        )
        assert response.status_code == 200, response.text
        yield World(http, services)


def _labels(response: httpx.Response, level: str) -> list[str]:
    if response.status_code == 204:
        return []
    assert response.status_code == 200, response.text
    tag = {"studies": "0020000D", "series": "0020000E", "instances": "00080018"}[level]
    return [LABEL[item[tag]["Value"][0]] for item in response.json()]


def _path(resource: str) -> str:
    for label in sorted(U, key=len, reverse=True):
        resource = resource.replace("{" + label + "}", U[label])
    return f"{ROOT}/{resource}"


# (resource path, query string, expected labels in response order)
MATRIX: list[tuple[str, str, list[str]]] = [
    # --- single value (C.2.2.2.1), keyword and tag, PN folded ---
    ("studies", "PatientID=PID-2", ["S2"]),
    ("studies", "00100020=PID-2", ["S2"]),
    ("studies", "PatientName=m%C3%BCller%5Ej%C3%BCrgen", ["S1"]),
    ("studies", "PatientName=MULLER%5EJURGEN", ["S1"]),
    ("series", "Modality=MR", ["S1b", "S2a"]),
    ("series", "00080060=US", ["S3a"]),
    ("studies/{S1}/series", "Modality=CT", ["S1a"]),
    ("instances", "InstanceNumber=2", ["S1a-2"]),
    ("studies/{S1}/instances", "Rows=16", ["S1b-1"]),
    ("studies/{S1}/series/{S1a}/instances", "InstanceNumber=1", ["S1a-1"]),
    ("instances", "PatientID=PID-2", ["S2a-1"]),
    ("series", "BodyPartExamined=HEAD", ["S1a", "S1b"]),
    ("studies", "AccessionNumber=50%25_x(y)", ["S3"]),
    # --- UID lists (C.2.2.2.2): comma and backslash ---
    ("studies", "StudyInstanceUID={S1},{S3}", ["S1", "S3"]),
    ("series", "SeriesInstanceUID={S1a}%5C{S2a}", ["S1a", "S2a"]),
    ("instances", "SOPInstanceUID={S1a-2},{S3a-1}", ["S1a-2", "S3a-1"]),
    ("instances", f"SOPClassUID={MRImageStorage}", ["S1b-1", "S2a-1"]),
    ("series", "StudyInstanceUID={S2}", ["S2a"]),
    # --- universal (C.2.2.2.3) ---
    ("studies", "PatientName=", ["S2", "S3", "S1", "S4"]),
    ("studies", "PatientName=*", ["S2", "S3", "S1", "S4"]),
    ("studies/{S1}/series", "SeriesDescription=", ["S1a", "S1b"]),
    ("studies/{S1}/series/{S1a}/instances", "SOPClassUID=", ["S1a-1", "S1a-2"]),
    # --- wildcards (C.2.2.2.4) ---
    ("studies", "PatientName=*ller*", ["S1"]),
    ("studies", "PatientName=*%E5%B1%B1%E7%94%B0*", ["S4"]),
    ("studies", "PatientName=o'b*", ["S3"]),
    ("series", "SeriesDescription=AX*", ["S1a", "S4a"]),
    ("series", "SeriesDescription=?OR*", ["S2a"]),
    ("instances", "PatientName=doe*", ["S2a-1"]),
    ("studies", "AccessionNumber=50%25*", ["S3"]),
    ("studies", "AccessionNumber=5?%25*", ["S3"]),
    ("studies", "AccessionNumber=5_*", []),
    # --- DA ranges, open ranges ---
    ("studies", "StudyDate=20240116", ["S2", "S3"]),
    ("studies", "StudyDate=-20240115", ["S1"]),
    ("studies", "StudyDate=20240116-", ["S2", "S3"]),
    ("series", "SeriesDate=20240115-20240115", ["S1a", "S1b"]),
    ("series", "PerformedProcedureStepStartDate=20240101-", ["S1a"]),
    ("instances", "StudyDate=20240116-20240116", ["S2a-1", "S3a-1"]),
    # --- TM ranges, partial precision ---
    ("studies", "StudyTime=07-0900", ["S2", "S1"]),
    ("studies", "StudyTime=23", ["S3"]),
    ("studies", "StudyTime=-0830", ["S2", "S1"]),
    ("studies", "StudyTime=0831-", ["S3"]),
    ("series", "SeriesTime=1100-", ["S1b"]),
    ("series", "PerformedProcedureStepStartTime=0835", ["S1a"]),
    # --- combined date-time (8.3.4.1.1): one DT range, not two independent ranges ---
    ("studies", "StudyDate=20240115-20240116&StudyTime=0800-0800", ["S2", "S1"]),
    ("studies", "StudyDate=20240115-20240116&StudyTime=0830-0700", ["S2", "S1"]),
    ("studies", "StudyDate=20240116-&StudyTime=0800-", ["S3"]),
    ("studies", "StudyDate=-20240116&StudyTime=-0700", ["S2", "S1"]),
    ("series", "SeriesDate=20240115-20240116&SeriesTime=1000-0710", ["S1b", "S2a"]),
    # --- sequence paths (C.2.2.2.6) and multi-valued attributes (QIDO-12/13) ---
    ("series", "RequestAttributesSequence.ScheduledProcedureStepID=SPS2", ["S1a"]),
    ("series", "00400275.00400009=SPS3", ["S2a"]),
    ("series", "RequestAttributesSequence.RequestedProcedureID=RP1", ["S1a"]),
    ("series", "RequestAttributesSequence.ScheduledProcedureStepID=SPS*", ["S1a", "S2a"]),
    ("series", "RequestAttributesSequence.ScheduledProcedureStepID=SPS", []),
    ("series", "RequestAttributesSequence.ScheduledProcedureStepID=sps1", []),
    ("studies/{S2}/instances", "RequestAttributesSequence.RequestedProcedureID=RP3", ["S2a-1"]),
    ("studies", "ModalitiesInStudy=MR", ["S2", "S1"]),
    ("studies", "ModalitiesInStudy=US,XA", ["S3"]),
    ("studies", "ModalitiesInStudy=C*", ["S1", "S4"]),
    ("series", "ModalitiesInStudy=MR", ["S1a", "S1b", "S2a"]),
    ("instances", "ModalitiesInStudy=US", ["S3a-1"]),
    # --- fuzzy PN (QIDO-14): accents, case, prefix per component, any order ---
    ("studies", "PatientName=jurg&fuzzymatching=true", ["S1"]),
    ("studies", "PatientName=jur%5Emul&fuzzymatching=true", ["S1"]),
    ("studies", "PatientName=zoe%20o&fuzzymatching=true", ["S3"]),
    ("studies", "PatientName=tarou%20yama&fuzzymatching=true", ["S4"]),
    ("studies", "PatientName=%E5%A4%AA%E9%83%8E&fuzzymatching=true", ["S4"]),
    ("studies", "PatientName=urg&fuzzymatching=true", []),
    ("studies", "PatientName=jurg&fuzzymatching=false", []),
    ("series", "PatientName=DOE&fuzzymatching=true", ["S2a"]),
    ("studies", "ReferringPhysicianName=jam%20wil&fuzzymatching=true", ["S2"]),
    # --- computed attributes are matchable (QIDO-26) ---
    ("studies", "NumberOfStudyRelatedSeries=2", ["S1"]),
    ("studies", "NumberOfStudyRelatedInstances=1", ["S2", "S3", "S4"]),
    ("series", "NumberOfSeriesRelatedInstances=2", ["S1a"]),
    # --- level rules (QIDO-03): patient keys everywhere, study keys not under a study ---
    ("studies/{S1}/series", "PatientID=PID-2", []),
    ("studies/{S1}/series", "PatientID=PID-1", ["S1a", "S1b"]),
    ("studies/{S1}/series", "StudyDate=19000101", ["S1a", "S1b"]),
    ("studies/{S1}/series/{S1a}/instances", "Modality=MR", ["S1a-1", "S1a-2"]),
    ("studies", "Modality=MR", ["S2", "S3", "S1", "S4"]),
    # --- path UIDs: unknown parent or mismatched pair is an empty search ---
    ("studies/1.2.3.4/series", "", []),
    ("studies/{S2}/series/{S1a}/instances", "", []),
    ("studies/{S2}/instances", "", ["S2a-1"]),
]


@pytest.mark.parametrize(("resource", "params", "expected"), MATRIX)
async def test_matrix(world: World, resource: str, params: str, expected: list[str]) -> None:
    """QIDO-01/03/06..14/26 per level, identical on PostgreSQL and SQLite."""
    path = _path(resource)
    query = params
    for label in sorted(U, key=len, reverse=True):
        query = query.replace("{" + label + "}", U[label])
    response = await world.http.get(f"{path}?{query}" if query else path)
    level = resource.rsplit("/", 1)[-1]
    # the order is checked by the paging tests; ids (the tie breaker) follow ingest batching
    assert sorted(_labels(response, level)) == sorted(expected), response.headers
    assert response.headers["x-total-count"] == str(len(expected))
    if not expected:
        assert response.status_code == 204
        assert response.content == b""


def _warnings(response: httpx.Response) -> list[str]:
    return response.headers.get_list("warning")


async def test_level_warnings(world: World) -> None:
    """QIDO-02/03: an attribute outside the resource's levels is named in a Warning."""
    response = await world.http.get(_path("studies/{S1}/series") + "?StudyDate=19000101")
    assert _warnings(response) == [
        f"299 {BASE}: Ignored attributes not supported at this level: StudyDate"
    ]
    response = await world.http.get(_path("studies") + "?SOPInstanceUID=1.2&Modality=CT")
    assert _warnings(response) == [
        f"299 {BASE}: Ignored attributes not supported at this level: Modality, SOPInstanceUID"
    ]
    response = await world.http.get(_path("instances") + "?OtherPatientIDsSequence.PatientID=1")
    assert any("OtherPatientIDsSequence.PatientID" in w for w in _warnings(response))


@pytest.mark.parametrize(
    "path",
    [
        "studies/not-a-uid/series",
        "studies/1.2..3/instances",
        "studies/{S1}/series/x/instances",
        "studies/1.02/series/{S1a}/instances",
    ],
)
async def test_malformed_path_uid(world: World, path: str) -> None:
    response = await world.http.get(_path(path))
    assert response.status_code == 400
    assert "InstanceUID" in response.json()["detail"] or "UID" in response.text


async def test_series_return_keys(world: World) -> None:
    """QIDO-22/24/25/26: /series adds study attributes; a study's series holds series only."""
    response = await world.http.get(_path("series") + f"?StudyInstanceUID={U['S1']}")
    [a, b] = sorted(response.json(), key=lambda item: item["00200011"]["Value"][0])
    assert a["0020000E"]["Value"] == [U["S1a"]]
    assert a["00081190"]["Value"] == [f"{BASE}/studies/{U['S1']}/series/{U['S1a']}"]
    assert a["00201209"] == {"vr": "IS", "Value": [2]}
    assert a["00080060"]["Value"] == ["CT"]
    assert a["00200011"]["Value"] == [1]
    assert a["0008103E"]["Value"] == ["AXIAL"]
    assert a["00080056"] == {"vr": "CS", "Value": ["ONLINE"]}
    assert a["00400244"]["Value"] == ["20240115"]
    items = a["00400275"]["Value"]
    assert [i["00400009"]["Value"] for i in items] == [["SPS1"], ["SPS2"]]
    # study attributes of QIDO-21 on /series
    assert a["00100010"]["Value"] == [{"Alphabetic": "Müller^Jürgen"}]
    assert a["00201206"] == {"vr": "IS", "Value": [2]}
    assert a["00080061"] == {"vr": "CS", "Value": ["CT", "MR"]}
    assert list(a) == sorted(a)
    assert b["00201209"] == {"vr": "IS", "Value": [1]}
    [x, _] = (await world.http.get(_path("studies/{S1}/series"))).json()  # SeriesNumber order
    assert x["0020000D"]["Value"] == [U["S1"]]
    assert "00100010" not in x
    assert "00201206" not in x
    assert x["00081190"] == a["00081190"]
    [s4] = (await world.http.get(_path("studies/{S4}/series"))).json()
    assert "00400244" not in s4  # a C attribute only when known (QIDO-25)
    assert s4["00201209"] == {"vr": "IS", "Value": [1]}


async def test_instance_return_keys(world: World) -> None:
    """QIDO-23/24: instances; /instances adds study and series, a study's instances series."""
    url = f"{BASE}/studies/{U['S1']}/series/{U['S1b']}/instances/{U['S1b-1']}"
    [i] = (await world.http.get(_path("instances") + f"?SOPInstanceUID={U['S1b-1']}")).json()
    assert i["00081190"]["Value"] == [url]
    assert i["00080016"]["Value"] == [MRImageStorage]
    assert i["00200013"]["Value"] == [1]
    assert i["00280010"]["Value"] == [16]
    assert i["00280011"]["Value"] == [8]
    assert i["00280100"]["Value"] == [16]
    assert i["00080060"]["Value"] == ["MR"]  # series
    assert i["00100020"]["Value"] == ["PID-1"]  # study / patient
    assert i["00201209"]["Value"] == [1]
    [j] = (await world.http.get(_path("studies/{S1}/instances") + "?Rows=16")).json()
    assert j["00080060"]["Value"] == ["MR"]
    assert "00100020" not in j
    assert j["0020000D"]["Value"] == [U["S1"]]
    [k, _] = (await world.http.get(_path("studies/{S1}/series/{S1a}/instances"))).json()
    assert "00080060" not in k
    assert "00100020" not in k
    assert k["0020000E"]["Value"] == [U["S1a"]]
    assert k["00200013"]["Value"] == [1]


async def test_includefield_per_level(world: World) -> None:
    """QIDO-16: includefield and ``all`` at the series and instance levels."""
    [a, _] = (await world.http.get(_path("studies/{S1}/series"))).json()
    assert "00180015" not in a
    [a, _] = (
        await world.http.get(_path("studies/{S1}/series") + "?includefield=BodyPartExamined")
    ).json()
    assert a["00180015"]["Value"] == ["HEAD"]
    [a, _] = (await world.http.get(_path("studies/{S1}/series") + "?includefield=all")).json()
    assert a["00180015"]["Value"] == ["HEAD"]
    assert a["00080031"]["Value"] == ["083500"]
    [i] = (
        await world.http.get(
            _path("instances") + f"?SOPInstanceUID={U['S2a-1']}&includefield=00280004"
        )
    ).json()
    assert i["00280004"]["Value"] == ["MONOCHROME2"]
    # a deeper level is never returned; the match key is
    [s] = (await world.http.get(_path("studies") + "?PatientID=PID-2&includefield=00280004")).json()
    assert "00280004" not in s
    [s, *_] = (await world.http.get(_path("series") + "?SeriesTime=")).json()
    assert "00080031" in s


@pytest.mark.parametrize(
    ("resource", "total", "order"),
    [
        ("series", 5, ["S1a", "S1b", "S2a", "S3a", "S4a"]),
        ("instances", 6, ["S1a-1", "S1a-2", "S1b-1", "S2a-1", "S3a-1", "S4a-1"]),
        ("studies/{S1}/instances", 3, ["S1a-1", "S1a-2", "S1b-1"]),
    ],
)
async def test_paging_per_level(world: World, resource: str, total: int, order: list[str]) -> None:
    """QIDO-17/18: limit/offset walk the same stable order; Warning and X-Total-Count."""
    level = resource.rsplit("/", 1)[-1]
    everything = _labels(await world.http.get(_path(resource)), level)
    assert sorted(everything) == order
    seen: list[str] = []
    for offset in range(0, total + 1, 2):
        response = await world.http.get(_path(resource) + f"?limit=2&offset={offset}")
        assert response.headers["x-total-count"] == str(total)
        page = _labels(response, level)
        seen += page
        remaining = total - offset - len(page)
        if page and remaining > 0:
            assert _warnings(response) == [
                f"299 {BASE}: There are {remaining} additional results that can be requested"
            ]
        else:
            assert _warnings(response) == []
    assert seen == everything
    again = _labels(await world.http.get(_path(resource)), level)
    assert again == everything


async def test_max_results_setting(database_url: str, tmp_path: Path) -> None:
    """QIDO-17: the configured maximum caps the page (LIGHTBOX_QIDO_MAX_RESULTS)."""
    settings = make_settings(
        database_url, tmp_path / "d", qido_max_results=2, qido_max_instance_results=3
    )
    async with app_client(settings) as (_, http):
        parts = [to_bytes(ds) for ds in _datasets()]
        assert (
            await http.post(f"{ROOT}/studies", content=multipart(parts), headers=stow_headers())
        ).status_code == 200
        response = await http.get(f"{ROOT}/studies?limit=100")
        assert len(response.json()) == 2
        assert response.headers["x-total-count"] == "4"
        assert any("There are 2 additional results" in w for w in _warnings(response))
        assert len((await http.get(f"{ROOT}/series")).json()) == 2
        assert len((await http.get(f"{ROOT}/instances")).json()) == 3


# --- the access restriction contract (StudyRestriction), in the service, at every level ---


@pytest.mark.parametrize(
    ("resource", "study_uids", "patient_ids", "expected"),
    [
        (Resource.STUDIES, {"S1", "S3"}, None, ["S3", "S1"]),
        (Resource.STUDIES, None, {"PID-2", "PID-4"}, ["S2", "S4"]),
        (Resource.STUDIES, {"S1", "S2"}, {"PID-2"}, ["S2"]),
        (Resource.STUDIES, set(), None, []),
        (Resource.SERIES, {"S1"}, None, ["S1a", "S1b"]),
        (Resource.SERIES, None, {"PID-3"}, ["S3a"]),
        (Resource.STUDY_SERIES, {"S2"}, None, []),  # the path names S1
        (Resource.STUDY_SERIES, {"S1"}, None, ["S1a", "S1b"]),
        (Resource.INSTANCES, {"S1"}, {"PID-1"}, ["S1a-1", "S1a-2", "S1b-1"]),
        (Resource.INSTANCES, None, {"PID-9"}, []),
        (Resource.STUDY_INSTANCES, {"S3"}, None, []),
        (Resource.SERIES_INSTANCES, None, {"PID-1"}, ["S1a-1", "S1a-2"]),
        (Resource.SERIES_INSTANCES, None, {"PID-2"}, []),
    ],
)
async def test_restriction_at_every_level(
    world: World,
    resource: Resource,
    study_uids: set[str] | None,
    patient_ids: set[str] | None,
    expected: list[str],
) -> None:
    restrict = StudyRestriction(
        study_uids=None if study_uids is None else frozenset(U[s] for s in study_uids),
        patient_ids=None if patient_ids is None else frozenset(patient_ids),
    )
    scoped = resource in (
        Resource.STUDY_SERIES,
        Resource.STUDY_INSTANCES,
        Resource.SERIES_INSTANCES,
    )
    query = parse_qido(
        [],
        resource=resource,
        study_uid=U["S1"] if scoped else None,
        series_uid=U["S1a"] if resource is Resource.SERIES_INSTANCES else None,
    )
    service = world.services.query
    search = {
        Level.STUDY: service.search_studies,
        Level.SERIES: service.search_series,
        Level.INSTANCE: service.search_instances,
    }[query.level]
    items, total, exact = await search(query, BASE, restrict=restrict)
    assert exact
    tag = {Level.STUDY: "0020000D", Level.SERIES: "0020000E", Level.INSTANCE: "00080018"}
    assert sorted(LABEL[i[tag[query.level]]["Value"][0]] for i in items) == sorted(expected)
    assert total == len(expected)
    unrestricted = (await search(query, BASE)).items
    assert len(unrestricted) >= len(expected)


# --- query-value decoding exactly once (issue point 4) ---


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # escaped by the client: each is decoded once
        ("PatientName=Doe%5EJohn", ["S2"]),
        ("PatientName=D%2An", ["S2"]),  # %2A is '*'
        ("PatientName=Do%3F%5EJohn", ["S2"]),  # ? wildcard, ^ delimiter
        ("StudyInstanceUID={S1}%2C{S2}", ["S2", "S1"]),
        ("AccessionNumber=50%25_x%28y%29", ["S3"]),
        ("AccessionNumber=50%_x(y)", ["S3"]),  # "%_x" is no escape: kept as it is
        ("PatientName=M%C3%BCller%5EJ%C3%BCrgen", ["S1"]),
        # sent raw (no client escaping): the same results
        ("PatientName=Doe^John", ["S2"]),
        ("PatientName=D*n", ["S2"]),
        ("PatientName=Do?^John", ["S2"]),
        ("StudyInstanceUID={S1},{S2}", ["S2", "S1"]),
        # decoded once only: %2525 is the three characters %25, which match nothing
        ("AccessionNumber=50%2525_x(y)", []),
        ("PatientName=Doe%255EJohn", []),
        # a slash in a value is just a character
        ("StudyDescription=CT%2FHEAD", []),
        ("StudyDescription=CT/HEAD", []),
    ],
)
async def test_decoded_exactly_once(world: World, raw: str, expected: list[str]) -> None:
    for label in sorted(U, key=len, reverse=True):
        raw = raw.replace("{" + label + "}", U[label])
    # httpx would re-encode a str URL; send the raw target bytes as they are
    url = httpx.URL(f"http://t{ROOT}/studies", query=raw.encode("utf-8"))
    response = await world.http.get(url)
    assert sorted(_labels(response, "studies")) == sorted(expected)


async def test_percent_encoded_utf8_round_trip(world: World) -> None:
    """CS-03: a non-ASCII value percent-encoded as UTF-8 by a client library."""
    response = await world.http.get(
        f"{ROOT}/studies", params={"PatientName": "Yamada^Tarou=山田^太郎"}
    )
    [item] = response.json()
    assert item["00100010"]["Value"] == [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]
    assert quote("山田") in str(response.request.url)


# --- the exact query shapes OHIF v3 sends (QIDO-27) ---

OHIF_LIST = (
    "limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060%2C00080090%2C00100030"
)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ("PatientName=*ller*", ["S1"]),
        ("00100020=*ID-2*", ["S2"]),
        ("StudyDate=20240116-20240131", ["S2", "S3"]),
        ("ModalitiesInStudy=", ["S1", "S2", "S3", "S4"]),
        (
            "PatientName=*o*&00100020=*PID*&StudyDate=20240101-20241231&ModalitiesInStudy=",
            ["S2", "S3"],
        ),
    ],
)
async def test_ohif_study_list(world: World, filters: str, expected: list[str]) -> None:
    response = await world.http.get(f"{ROOT}/studies?{OHIF_LIST}&{filters}")
    assert sorted(_labels(response, "studies")) == expected
    assert _warnings(response) == []
    for item in response.json():
        for tag in ("00081030", "00080090", "00100030", "00080061", "00201208"):
            assert tag in item
        assert "00080060" not in item  # a series attribute is never returned on /studies


async def test_ohif_series_and_prior_studies(world: World) -> None:
    response = await world.http.get(
        _path("studies/{S1}/series") + "?includefield=0008103E%2C00080021"
    )
    items = response.json()
    assert [i["0008103E"]["Value"] for i in items] == [["AXIAL"], ["SAG T1"]]
    assert [i["00080021"]["Value"] for i in items] == [["20240115"], ["20240115"]]
    assert _warnings(response) == []
    priors = await world.http.get(f"{ROOT}/studies?00100020=PID-1")
    assert _labels(priors, "studies") == ["S1"]


# --- hostile input: never a 500, never a hang ---


@pytest.mark.parametrize("resource", ["studies", "series", "instances"])
@pytest.mark.parametrize(
    ("params", "status"),
    [
        ([("PatientID", "x" * 10_000)], 204),
        ([("PatientName", "*" + "y" * 10_000 + "*")], 204),
        ([("PatientName", "z" * 10_000), ("fuzzymatching", "true")], 204),
        ([("PatientID", "' OR '1'='1")], 204),
        ([("PatientID", "%")], 204),
        ([("PatientID", "_")], 204),
        ([("PatientID", "\\")], 204),
        ([("PatientName", "%^_"), ("fuzzymatching", "true")], 204),
        ([("PatientName", "Robert'); DROP TABLE study;--")], 204),
        ([("PatientID", "x" * 20_000)], 400),
        ([("StudyInstanceUID", ",".join(f"1.2.{i}" for i in range(1000)))], 204),
        ([("StudyInstanceUID", ",".join(f"1.2.{i}" for i in range(1001)))], 400),
        ([("ModalitiesInStudy", ",".join(f"M{i}" for i in range(1001)))], 400),
        ([("StudyDate", "2" * 10_000)], 400),
        ([("StudyTime", "1" * 10_000)], 400),
        ([("includefield", ",".join(["PatientID"] * 5000))], 200),
        ([("limit", "9" * 30)], 400),
        ([("a" * 10_000, "1")], 400),
        ([("PatientName." * 20 + "PatientID", "1")], 400),
    ],
)
async def test_hostile_input(
    world: World, resource: str, params: list[tuple[str, str]], status: int
) -> None:
    response = await world.http.get(_path(resource), params=tuple(params))
    assert response.status_code == status, response.text[:300]
    if status == 400:
        assert response.json()["detail"]
    assert len(_labels(await world.http.get(_path("studies")), "studies")) == 4


async def test_empty_status_setting(database_url: str, tmp_path: Path) -> None:
    """QIDO-19: 204 by default; ``LIGHTBOX_QIDO_EMPTY_STATUS=200`` answers ``200 []``."""
    settings = make_settings(database_url, tmp_path / "d", qido_empty_status=200)
    async with app_client(settings) as (_, http):
        response = await http.get(f"{ROOT}/studies?PatientID=nobody")
        assert response.status_code == 200
        assert response.json() == []
        assert response.headers["content-type"].startswith("application/dicom+json")
        assert response.headers["x-total-count"] == "0"


async def test_count_limit_setting(database_url: str, tmp_path: Path) -> None:
    """Counting stops at LIGHTBOX_QIDO_COUNT_LIMIT: no X-Total-Count, a 'more than' Warning."""
    settings = make_settings(database_url, tmp_path / "d", qido_count_limit=3)
    async with app_client(settings) as (_, http):
        parts = [to_bytes(ds) for ds in _datasets()]
        assert (
            await http.post(f"{ROOT}/studies", content=multipart(parts), headers=stow_headers())
        ).status_code == 200
        response = await http.get(f"{ROOT}/instances?limit=1")
        assert len(response.json()) == 1
        assert "x-total-count" not in response.headers
        assert _warnings(response) == [
            f"299 {BASE}: There are more than 2 additional results that can be requested"
        ]
        # the cap never falls below the page: offset + limit still counts exactly
        response = await http.get(f"{ROOT}/instances?limit=10")
        assert response.headers["x-total-count"] == "6"
        response = await http.get(f"{ROOT}/instances?limit=2&offset=2")
        assert "x-total-count" not in response.headers
        response = await http.get(f"{ROOT}/studies?limit=2&offset=2")
        assert response.headers["x-total-count"] == "4"
        assert _warnings(response) == []
        response = await http.get(f"{ROOT}/studies?limit=2")
        assert "x-total-count" not in response.headers
        assert _warnings(response) == [
            f"299 {BASE}: There are more than 1 additional results that can be requested"
        ]

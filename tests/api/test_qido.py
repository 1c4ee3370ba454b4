"""QIDO-RS ``GET /studies`` over the ASGI app, on PostgreSQL and SQLite (first QIDO slice)."""

from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.factories import make_instance, multipart, stow_headers

ROOT = "/dicom-web"
STUDIES = f"{ROOT}/studies"
BASE = "http://testserver/dicom-web"

# fixed (from entropy, not random): they are in test ids, which every xdist worker must
# collect alike
UID_A, UID_B, UID_C, UID_D = (generate_uid(entropy_srcs=["test_qido", s]) for s in "ABCD")

# study A: accented patient name, two series (CT and MR), January 2024
# study B: February 2024, an accession number full of LIKE metacharacters
# study C: no study date, US
# study D: lower-case look-alike accession number, March 2024
_STUDIES: list[dict[str, Any]] = [
    {
        "StudyInstanceUID": UID_A,
        "PatientName": "Müller^Jürgen",
        "PatientID": "PID-A",
        "StudyDate": "20240115",
        "AccessionNumber": "ACC-A",
        "Modality": "CT",
    },
    {
        "StudyInstanceUID": UID_A,
        "PatientName": "Müller^Jürgen",
        "PatientID": "PID-A",
        "StudyDate": "20240115",
        "AccessionNumber": "ACC-A",
        "Modality": "MR",
        "SeriesNumber": 2,
    },
    {
        "StudyInstanceUID": UID_B,
        "PatientName": "Doe^John",
        "PatientID": "PID-B",
        "StudyDate": "20240201",
        "AccessionNumber": "AB%C_D",
        "StudyDescription": "MR KNEE",
        "Modality": "MR",
    },
    {
        "StudyInstanceUID": UID_C,
        "PatientName": "Smith^Anna",
        "PatientID": "PID-C",
        "StudyDate": "",
        "AccessionNumber": "ABXCYD",
        "Modality": "US",
    },
    {
        "StudyInstanceUID": UID_D,
        "PatientName": "Doe^Jane",
        "PatientID": "PID-D",
        "StudyDate": "20240301",
        "AccessionNumber": "acc-a",
        "Modality": "CT",
    },
]


@pytest.fixture
async def stored(client: httpx.AsyncClient) -> None:
    """The studies above, stored through STOW-RS (series UIDs fresh per instance)."""
    parts = [make_instance(SeriesInstanceUID=generate_uid(), **s) for s in _STUDIES]
    response = await client.post(STUDIES, content=multipart(parts), headers=stow_headers())
    assert response.status_code == 200, response.text


async def _search(
    client: httpx.AsyncClient, params: list[tuple[str, str]] | str = "", **headers: str
) -> httpx.Response:
    if isinstance(params, str):
        return await client.get(f"{STUDIES}?{params}" if params else STUDIES, headers=headers)
    return await client.get(STUDIES, params=tuple(params), headers=headers)


def _uids(response: httpx.Response) -> list[str]:
    if response.status_code == 204:
        return []
    assert response.status_code == 200, response.text
    return [item["0020000D"]["Value"][0] for item in response.json()]


def _warnings(response: httpx.Response) -> list[str]:
    return response.headers.get_list("warning")


pytestmark = pytest.mark.usefixtures("stored")


async def test_all_studies_and_return_keys(client: httpx.AsyncClient) -> None:
    """QIDO-18/19/21/25/26, JSON-01: every study, stable order, required keys, computed ones."""
    response = await _search(client)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    assert response.headers["x-total-count"] == "4"
    assert _warnings(response) == []
    assert _uids(response) == [UID_D, UID_B, UID_A, UID_C]  # StudyDate desc, NULL last
    items = response.json()
    a = items[2]
    assert list(a) == sorted(a)
    assert a["00100010"]["Value"] == [{"Alphabetic": "Müller^Jürgen"}]
    assert a["00201206"] == {"vr": "IS", "Value": [2]}
    assert a["00201208"] == {"vr": "IS", "Value": [2]}
    assert a["00080061"] == {"vr": "CS", "Value": ["CT", "MR"]}
    assert a["00080056"] == {"vr": "CS", "Value": ["ONLINE"]}
    assert a["00081190"] == {"vr": "UR", "Value": [f"{BASE}/studies/{UID_A}"]}
    for tag in ("00080020", "00080030", "00080050", "00080090", "00100020", "00100030"):
        assert tag in a
    assert "00081030" not in a  # StudyDescription only when asked for
    c = items[3]
    assert c["00080020"] == {"vr": "DA"}  # QIDO-25: R key present without a value


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("PatientName=*MUL*", ["A"]),
        ("PatientName=*mul*", ["A"]),
        ("PatientName=m%C3%BCller%5Ej%C3%BCrgen", ["A"]),
        ("PatientName=M%C3%BCller*", ["A"]),
        ("PatientName=MULLER*", ["A"]),
        ("PatientName=Doe%5EJ%3Fhn", ["B"]),
        ("PatientName=Doe*", ["D", "B"]),
        ("00100010=Smith%5EAnna", ["C"]),
        ("PatientID=PID-B", ["B"]),
        ("00100020=PID-C", ["C"]),
        ("PatientID=pid-b", []),
        (f"StudyInstanceUID={UID_A},{UID_C}", ["A", "C"]),
        (f"StudyInstanceUID={UID_A}%5C{UID_B}", ["B", "A"]),
        (f"0020000d={UID_D}", ["D"]),
        ("AccessionNumber=ACC-A", ["A"]),
        ("AccessionNumber=acc-a", ["D"]),
        ("AccessionNumber=ACC*", ["A"]),
        ("AccessionNumber=acc*", ["D"]),
        ("StudyDate=20240115", ["A"]),
        ("StudyDate=20240101-20240131", ["A"]),
        ("StudyDate=20240201-", ["D", "B"]),
        ("StudyDate=-20240201", ["B", "A"]),
        ("ModalitiesInStudy=MR", ["B", "A"]),
        ("ModalitiesInStudy=US,CT", ["D", "A", "C"]),
        ("ModalitiesInStudy=US%5CXA", ["C"]),
        ("StudyDescription=MR*", ["B"]),
        ("StudyDescription=MR%20KNEE", ["B"]),
        ("StudyID=1", ["D", "B", "A", "C"]),
        ("ReferringPhysicianName=house*", ["D", "B", "A", "C"]),
        ("PatientName=*&PatientID=", ["D", "B", "A", "C"]),
        ("PatientName=Doe*&StudyDate=20240201", ["B"]),
    ],
)
async def test_matching(client: httpx.AsyncClient, params: str, expected: list[str]) -> None:
    """QIDO-01/06/07/08/09/10/13: keyword or tag keys, PN folding, lists, wildcards, ranges."""
    uid = {"A": UID_A, "B": UID_B, "C": UID_C, "D": UID_D}
    response = await _search(client, params)
    assert _uids(response) == [uid[x] for x in expected]
    if not expected:
        assert response.status_code == 204
        assert response.content == b""


async def test_ohif_study_list(client: httpx.AsyncClient) -> None:
    """QIDO-27: the OHIF study-list query shape."""
    response = await _search(
        client,
        "limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060"
        "&PatientName=*MUL*&StudyDate=20240101-20240131",
    )
    assert _uids(response) == [UID_A]
    [item] = response.json()
    assert item["00081030"] == {"vr": "LO", "Value": ["CT HEAD"]}
    assert "00080060" not in item  # series level: never returned on /studies (QIDO-16)
    assert _warnings(response) == []


async def test_universal_and_includefield(client: httpx.AsyncClient) -> None:
    """QIDO-08/16: an empty match key and includefield return the attribute."""
    [item, *_] = (await _search(client, "StudyDescription=")).json()
    assert "00081030" in item
    [item, *_] = (await _search(client, "includefield=StudyDescription")).json()
    assert "00081030" in item
    [item, *_] = (await _search(client, "includefield=00081030&includefield=NoSuchThing")).json()
    assert "00081030" in item
    [item, *_] = (await _search(client, "includefield=all")).json()
    assert "00081030" in item
    assert "00080005" in item


async def test_paging(client: httpx.AsyncClient) -> None:
    """QIDO-17/18: limit and offset, stable order, a Warning while results remain."""
    first = await _search(client, "limit=1")
    assert _uids(first) == [UID_D]
    assert first.headers["x-total-count"] == "4"
    assert _warnings(first) == [f"299 {BASE}: There are 3 additional results that can be requested"]
    middle = await _search(client, "limit=2&offset=1")
    assert _uids(middle) == [UID_B, UID_A]
    assert _warnings(middle) == [
        f"299 {BASE}: There are 1 additional results that can be requested"
    ]
    last = await _search(client, "limit=2&offset=3")
    assert _uids(last) == [UID_C]
    assert _warnings(last) == []
    beyond = await _search(client, "offset=10")
    assert beyond.status_code == 204
    assert beyond.headers["x-total-count"] == "4"


async def test_no_match_is_204(client: httpx.AsyncClient) -> None:
    """QIDO-19: zero matches give 204 with an empty body."""
    response = await _search(client, "PatientID=nobody")
    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.parametrize(
    "params",
    [
        "StudyDate=2024-01-01",
        "StudyDate=20240230",
        "StudyDate=20240131-20240101",
        "StudyDate=-",
        "limit=-1",
        "limit=ten",
        "offset=1.5",
        "fuzzymatching=yes",
        "PatientID=1&PatientID=2",
        "PatientID=1&00100020=2",
        "NoSuchAttribute=1",
        "patientname=x",
        "StudyInstanceUID=not-a-uid",
        "includefield=all,PatientID",
        "PatientID=a%00b",
    ],
)
async def test_bad_requests(client: httpx.AsyncClient, params: str) -> None:
    """QIDO-02/10/14/16/17: malformed parameters give 400 naming the parameter."""
    response = await _search(client, params)
    assert response.status_code == 400, response.text
    name = params.split("=")[0]
    assert name.split("&")[0] in response.text or "includefield" in response.text


async def test_warnings(client: httpx.AsyncClient) -> None:
    """QIDO-02/03/14: ignored attributes are reported, not refused; fuzzy matching is done."""
    response = await _search(client, "Modality=CT&fuzzymatching=true&PatientName=doe%5Ejohn")
    assert _uids(response) == [UID_B]
    warnings = _warnings(response)
    assert not any("fuzzymatching" in w for w in warnings)
    assert warnings == [f"299 {BASE}: Ignored attributes not supported at this level: Modality"]
    response = await _search(client, "emptyvaluematching=true&PatientName=doe%5Ejohn")
    assert _uids(response) == [UID_B]
    assert _warnings(response) == [
        f"299 {BASE}: The emptyvaluematching parameter is not supported. "
        "Only literal matching has been performed."
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("AB%C_D", ["B"]),  # literal match: % and _ are not wildcards
        ("AB%*", ["B"]),
        ("AB_C*", []),
        ("AB?C?D", ["B", "C"]),  # ? is the wildcard
        ("AB%", []),
        ("*\\*", []),
        ("*[*", []),
        ("AB%C_%", []),
    ],
)
async def test_like_metacharacters_are_literal(
    client: httpx.AsyncClient, value: str, expected: list[str]
) -> None:
    """QIDO-09: SQL LIKE metacharacters in values match literally."""
    uid = {"B": UID_B, "C": UID_C}
    response = await _search(client, [("AccessionNumber", value)])
    assert _uids(response) == [uid[x] for x in expected]


@pytest.mark.parametrize(
    "params",
    [
        [("PatientID", "x" * 10_000)],
        [("PatientName", "*" + "x" * 10_000 + "*")],
        [("PatientID", "' OR '1'='1")],
        [("PatientName", "Robert'); DROP TABLE study;--")],
        [("StudyDescription", '"; SELECT * FROM instance; --*')],
    ],
)
async def test_hostile_values(client: httpx.AsyncClient, params: list[tuple[str, str]]) -> None:
    """Bound parameters only: long values and SQL metacharacters match nothing, harm nothing."""
    response = await _search(client, params)
    assert response.status_code == 204, response.text
    assert len(_uids(await _search(client))) == 4


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ("application/dicom+json", 200),
        ("application/json", 200),
        ("*/*", 200),
        ("text/html, application/dicom+json;q=0.5", 200),
        ("application/dicom+xml", 406),
        # QIDO-20: the XML form is multipart/related (tests/api/test_xml.py checks its content)
        ('multipart/related; type="application/dicom+xml"', 200),
        ("text/html", 406),
    ],
)
async def test_accept(client: httpx.AsyncClient, accept: str, status: int) -> None:
    """QIDO-19/20: DICOM JSON, or DICOM XML in multipart/related; nothing else."""
    response = await _search(client, accept=accept)
    assert response.status_code == status, response.text

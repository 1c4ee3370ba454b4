"""The QIDO-RS statement cache (issue 3, ``app.index.search.statements``): one compiled statement
per query shape, values bound.

On PostgreSQL and SQLite: a second query of a cached shape with other values finds its own
matches; list arity and range ends are part of the shape; hostile values stay literal (never
in the SQL text); the cache is bounded (least recently used dropped first).
"""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid
from sqlalchemy.dialects.sqlite import aiosqlite

from app.dicom.query import Resource, StudyRestriction, parse_qido
from app.index.search import STATEMENTS, StatementCache
from app.index.search.plan import page_plan
from app.services.container import Services
from tests.factories import make_instance, multipart, stow_headers

STUDIES = "/dicom-web/studies"
UID_A, UID_B, UID_C, UID_D = (generate_uid() for _ in range(4))
_STUDIES: list[dict[str, Any]] = [
    {"StudyInstanceUID": UID_A, "PatientName": "Müller^Jürgen", "PatientID": "PID-A"}
    | {"StudyDate": "20240115", "AccessionNumber": "ACC-A", "Modality": "CT"},
    {"StudyInstanceUID": UID_B, "PatientName": "Doe^John", "PatientID": "PID-B"}
    | {"StudyDate": "20240201", "AccessionNumber": "AB%C_D", "Modality": "MR"},
    {"StudyInstanceUID": UID_C, "PatientName": "Smith^Anna", "PatientID": "PID-C"}
    | {"StudyDate": "", "AccessionNumber": "ABXCYD", "Modality": "US"},
    {"StudyInstanceUID": UID_D, "PatientName": "Doe^Jane", "PatientID": "x' OR '1'='1"}
    | {"StudyDate": "20240301", "AccessionNumber": "acc-a", "Modality": "CT"},
]
NAMES = {UID_A: "A", UID_B: "B", UID_C: "C", UID_D: "D"}


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    STATEMENTS.clear()
    yield
    STATEMENTS.clear()


@pytest.fixture
async def stored(client: httpx.AsyncClient) -> None:
    parts = [make_instance(SeriesInstanceUID=generate_uid(), **s) for s in _STUDIES]
    response = await client.post(STUDIES, content=multipart(parts), headers=stow_headers())
    assert response.status_code == 200, response.text


pytestmark = pytest.mark.usefixtures("stored")


async def _found(client: httpx.AsyncClient, params: list[tuple[str, str]]) -> list[str]:
    response = await client.get(STUDIES, params=tuple(params))
    if response.status_code == 204:
        return []
    assert response.status_code == 200, response.text
    return [NAMES[item["0020000D"]["Value"][0]] for item in response.json()]


async def test_same_shape_other_values(client: httpx.AsyncClient) -> None:
    """A cached shape run with other values finds their matches, and adds no statement."""
    assert await _found(client, [("PatientID", "PID-A")]) == ["A"]
    cached = len(STATEMENTS)
    assert cached >= 1
    assert await _found(client, [("PatientID", "PID-B")]) == ["B"]
    assert await _found(client, [("PatientID", "PID-C")]) == ["C"]
    assert await _found(client, [("PatientName", "doe*")]) == ["D", "B"]
    assert await _found(client, [("PatientName", "*ULLER*")]) == ["A"]
    wildcard = len(STATEMENTS)
    assert await _found(client, [("PatientName", "SMITH*")]) == ["C"]
    assert len(STATEMENTS) == wildcard > cached
    # paging values are bound too: same shape, another page
    assert await _found(client, [("limit", "2"), ("offset", "0")]) == ["D", "B"]
    paged = len(STATEMENTS)
    assert await _found(client, [("limit", "2"), ("offset", "2")]) == ["A", "C"]
    assert await _found(client, [("limit", "1"), ("offset", "3")]) == ["C"]
    assert len(STATEMENTS) == paged


async def test_list_arity_and_range_ends(client: httpx.AsyncClient) -> None:
    """Each IN-list length and each range form is its own statement, with its own results."""
    assert await _found(client, [("StudyInstanceUID", UID_A)]) == ["A"]
    assert await _found(client, [("StudyInstanceUID", f"{UID_A},{UID_C}")]) == ["A", "C"]
    assert await _found(client, [("StudyInstanceUID", f"{UID_B},{UID_C},{UID_D}")]) == [
        "D",
        "B",
        "C",
    ]
    assert await _found(client, [("StudyInstanceUID", UID_B)]) == ["B"]
    assert await _found(client, [("StudyInstanceUID", f"{UID_D},{UID_B}")]) == ["D", "B"]
    assert await _found(client, [("ModalitiesInStudy", "CT")]) == ["D", "A"]
    assert await _found(client, [("ModalitiesInStudy", "MR,US")]) == ["B", "C"]
    assert await _found(client, [("ModalitiesInStudy", "US")]) == ["C"]
    # one bound value each, but different SQL: the range end is part of the shape
    assert await _found(client, [("StudyDate", "20240201-")]) == ["D", "B"]
    assert await _found(client, [("StudyDate", "-20240201")]) == ["B", "A"]
    assert await _found(client, [("StudyDate", "20240115")]) == ["A"]
    assert await _found(client, [("StudyDate", "20240301-")]) == ["D"]
    assert await _found(client, [("StudyDate", "-20240115")]) == ["A"]


async def test_hostile_values_stay_literal(client: httpx.AsyncClient) -> None:
    """LIKE metacharacters and SQL in values match literally and never reach the SQL text."""
    assert await _found(client, [("AccessionNumber", "AB%C_D")]) == ["B"]
    assert await _found(client, [("AccessionNumber", "ABXCYD")]) == ["C"]
    assert await _found(client, [("AccessionNumber", "AB%*")]) == ["B"]
    assert await _found(client, [("AccessionNumber", "AB_*")]) == []
    assert await _found(client, [("AccessionNumber", "ABX*")]) == ["C"]
    assert await _found(client, [("PatientID", "x' OR '1'='1")]) == ["D"]
    assert await _found(client, [("PatientID", "' OR 1=1 --")]) == []
    assert await _found(client, [("PatientID", "x' OR *")]) == ["D"]
    texts = STATEMENTS.texts()
    assert texts
    for text in texts:
        for value in ("AB%", "ABX", "OR '1'", "OR 1=1", "PID-", "x'"):
            assert value not in text


async def test_restriction_shapes(services: Services) -> None:
    """A scoped grant's UIDs and patient IDs are bound values of their own shape."""

    async def found(restrict: StudyRestriction | None) -> list[str]:
        query = parse_qido([], resource=Resource.STUDIES)
        results = await services.query.search(query, "http://t", restrict=restrict)
        return [NAMES[item["0020000D"]["Value"][0]] for item in results.items]

    assert await found(StudyRestriction(study_uids=frozenset({UID_A}))) == ["A"]
    assert await found(StudyRestriction(study_uids=frozenset({UID_C}))) == ["C"]
    assert await found(StudyRestriction(study_uids=frozenset({UID_B, UID_D}))) == ["D", "B"]
    assert await found(StudyRestriction(patient_ids=frozenset({"PID-C"}))) == ["C"]
    assert await found(StudyRestriction(patient_ids=frozenset({"PID-A", "PID-B"}))) == ["B", "A"]
    both = StudyRestriction(study_uids=frozenset({UID_A, UID_B}), patient_ids=frozenset({"PID-B"}))
    assert await found(both) == ["B"]
    assert await found(StudyRestriction(study_uids=frozenset())) == []
    assert await found(None) == ["D", "B", "A", "C"]


def test_cache_is_bounded() -> None:
    """Past its size, the least recently used shape is dropped; a hit refreshes a shape."""
    cache = StatementCache(size=3)
    dialect = aiosqlite.dialect()
    shapes = [
        [("PatientID", "P")],
        [("PatientName", "A*")],
        [("StudyDate", "20240101-")],
        [("AccessionNumber", "X")],
        [("StudyDate", "-20240101")],
    ]

    def plan(params: list[tuple[str, str]]) -> Any:
        query = parse_qido(params, resource=Resource.STUDIES)
        return page_plan(query, limit=10, offset=0, sqlite=True, restrict=None)

    for params in shapes[:3]:
        assert cache.template(dialect, *plan(params)) is not None
    assert len(cache) == 3
    first = cache.texts()[0]
    cache.template(dialect, *plan([("PatientID", "Q")]))  # a hit: now the most recent
    assert cache.texts()[-1] == first
    cache.template(dialect, *plan(shapes[3]))
    cache.template(dialect, *plan(shapes[4]))
    assert len(cache) == 3
    assert cache.texts()[0] == first  # the two others were older


async def test_small_global_cache(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a tiny cache, shapes evicted and rebuilt still answer correctly."""
    monkeypatch.setattr(STATEMENTS, "size", 2)
    for _ in range(2):
        assert await _found(client, [("PatientID", "PID-A")]) == ["A"]
        assert await _found(client, [("StudyDate", "20240201-")]) == ["D", "B"]
        assert await _found(client, [("StudyInstanceUID", f"{UID_A},{UID_C}")]) == ["A", "C"]
        assert await _found(client, [("AccessionNumber", "AB%*")]) == ["B"]
        assert len(STATEMENTS) <= 2

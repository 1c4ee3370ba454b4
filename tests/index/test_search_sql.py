"""The SQL a search runs (``app.index.search``), as compiled for PostgreSQL and SQLite.

For representative queries: the compiled text of the page (and count) statement the statement
cache holds, and the values the driver receives for it. Every value is a bound parameter: the
only quoted literals in any statement are the ``ESCAPE`` characters, so a hostile value such
as ``' OR 1=1 --`` exists only as a parameter. ``LIKE`` patterns escape ``%``, ``_`` and the
escape character; SQLite's ``GLOB`` brackets ``[``. The same shape gives the same SQL.
"""

import doctest
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from app.dicom.query import Query, Resource, SortOrder, StudyRestriction, Wildcard, parse_qido
from app.index.db import Database
from app.index.search import StatementCache, predicates, search
from app.index.search.plan import count_plan, page_plan
from app.index.search.statements import Template

#: a placeholder as compiled: asyncpg's numbered one with its cast, SQLite's question mark
_PLACEHOLDER = {"postgresql": r"\$\d+(?:::[A-Z]+)?", "sqlite": r"\?"}
#: the only quoted literals a statement may hold: the LIKE escape characters
_ESCAPES = {"'\\'", "'!'"}
HOSTILE = "' OR 1=1 --"


@pytest_asyncio.fixture
async def conn(database_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection to the (empty) index: its dialect is the one searches compile for."""
    db = Database(database_url)
    try:
        async with db.read() as connection:
            yield connection
    finally:
        await db.close()


class Compiled:
    """A search statement as the cache holds it, and the driver's parameters for it."""

    def __init__(self, dialect: Dialect, template: Template, values: list[Any]) -> None:
        self.dialect = dialect.name
        self.sql = template.sql
        parameters = template.parameters(values)
        assert isinstance(parameters, tuple), "both drivers take positional parameters"
        self.parameters = parameters

    def bound(self, fragment: str, occurrence: int = 0) -> list[Any]:
        """The values of the placeholders (``@``) of ``fragment`` where it occurs in the SQL
        (the ``occurrence``-th time, from the end if negative); the rest of ``fragment`` is
        literal SQL text."""
        placeholder = _PLACEHOLDER[self.dialect]
        pattern = re.escape(fragment).replace("@", f"({placeholder})")
        matches = list(re.finditer(pattern, self.sql))
        assert len(matches) > occurrence >= -len(matches), f"{fragment!r} not in:\n{self.sql}"
        found = matches[occurrence]
        return [self._value(found, group) for group in range(1, (found.lastindex or 0) + 1)]

    def _value(self, match: re.Match[str], group: int) -> Any:
        if self.dialect == "postgresql":
            number = re.match(r"\$(\d+)", match.group(group))
            assert number is not None
            return self.parameters[int(number.group(1)) - 1]
        return self.parameters[self.sql.count("?", 0, match.start(group))]

    def literals(self) -> set[str]:
        """Every quoted literal of the SQL text."""
        return set(re.findall(r"'[^']*'", self.sql))


def _page(
    conn: AsyncConnection,
    query: Query,
    *,
    limit: int = 25,
    offset: int = 0,
    restrict: StudyRestriction | None = None,
    cache: StatementCache | None = None,
) -> Compiled:
    sqlite = conn.dialect.name == "sqlite"
    b, build = page_plan(query, limit=limit, offset=offset, sqlite=sqlite, restrict=restrict)
    cache = StatementCache() if cache is None else cache
    template = cache.template(conn.dialect, b, build)
    assert template is not None, "a search statement runs from its text"
    compiled = Compiled(conn.dialect, template, b.values)
    assert compiled.literals() <= _ESCAPES, compiled.sql
    return compiled


def _studies(*params: tuple[str, str]) -> Query:
    return parse_qido(params, resource=Resource.STUDIES)


async def test_uid_list(conn: AsyncConnection) -> None:
    page = _page(conn, _studies(("StudyInstanceUID", "1.2.840.1,1.2.840.2")))
    assert page.bound("study.study_uid IN (@, @)") == ["1.2.840.1", "1.2.840.2"]
    assert "1.2.840" not in page.sql


async def test_wildcard_escaping(conn: AsyncConnection) -> None:
    """``%`` and ``_`` in a value match themselves; ``*`` and ``?`` are the wildcards."""
    page = _page(conn, _studies(("AccessionNumber", "50%_a[1]?*")))
    if conn.dialect.name == "sqlite":
        # GLOB is case-sensitive (QIDO-06) and knows no % or _; [ opens a set, so bracketed
        assert page.bound("(study.accession_number GLOB @)") == ["50%_a[[]1]?*"]
    else:
        like = page.bound("study.accession_number LIKE @ ESCAPE '\\'")
        assert like == ["50\\%\\_a[1]_%"]
    assert "50" not in page.sql


async def test_wildcard_on_a_multi_valued_key(conn: AsyncConnection) -> None:
    """Inside a backslash-joined column, ``!`` is the LIKE escape (QIDO-13)."""
    query = parse_qido(
        [("RequestAttributesSequence.RequestedProcedureID", "R!P%_*")], resource=Resource.SERIES
    )
    page = _page(conn, query)
    column = "series.requested_procedure_ids"
    if conn.dialect.name == "sqlite":
        assert page.bound(f"@ || {column} || @ GLOB @") == ["\\", "\\", "*\\R!P%_*\\*"]
    else:
        found = page.bound(f"(@ || {column} || @) LIKE @ ESCAPE '!'")
        assert found == ["\\", "\\", "%\\R!!P!%!_%\\%"]


async def test_sequence_key(conn: AsyncConnection) -> None:
    """A single value of a multi-valued key: found framed by delimiters, at any position."""
    query = parse_qido(
        [("RequestAttributesSequence.RequestedProcedureID", "RP1")], resource=Resource.SERIES
    )
    page = _page(conn, query)
    finder = "instr" if conn.dialect.name == "sqlite" else "strpos"
    column = "series.requested_procedure_ids"
    found = page.bound(f"{finder}(@ || {column} || @, @) > @")
    assert found == ["\\", "\\", "\\RP1\\", 0]


async def test_date_range(conn: AsyncConnection) -> None:
    """Both ends bound; SQLite's DATE bind processor turns a date into its ISO text."""
    page = _page(conn, _studies(("StudyDate", "20240101-20241231")))
    bounds = page.bound("study.study_date >= @ AND study.study_date <= @")
    if conn.dialect.name == "sqlite":
        assert bounds == ["2024-01-01", "2024-12-31"]
    else:
        assert bounds == [date(2024, 1, 1), date(2024, 12, 31)]
    open_ended = _page(conn, _studies(("StudyDate", "20240101-")))
    assert "study.study_date <=" not in open_ended.sql
    assert open_ended.sql != page.sql


async def test_fuzzy_name(conn: AsyncConnection) -> None:
    """Each word (normalised, LIKE metacharacters escaped) prefixes some name component."""
    query = _studies(("fuzzymatching", "true"), ("PatientName", "doe jo%"))
    page = _page(conn, query)
    components = "(@ || replace(replace(study.patient_name_norm, @, @), @, @)) LIKE @ ESCAPE '\\'"
    assert page.bound(components, 0) == ["^", "=", "^", " ", "^", "%^DOE%"]
    assert page.bound(components, 1) == ["^", "=", "^", " ", "^", "%^JO\\%%"]


async def test_modalities_in_study(conn: AsyncConnection) -> None:
    page = _page(conn, _studies(("ModalitiesInStudy", "CT,MR")))
    exists = "EXISTS (SELECT * \nFROM series AS study_series \nWHERE study_series.study_id = "
    assert exists + "study.id AND " in page.sql
    if conn.dialect.name == "sqlite":
        assert page.bound("study_series.modality IN (@, @)") == ["CT", "MR"]
    else:  # the prefix too: the condition the prefix index serves
        prefix = "substr(study_series.modality, 1, 500) IN (substr(@, 1, 500), substr(@, 1, 500))"
        assert page.bound(prefix) == ["CT", "MR"]
        assert page.bound("study_series.modality IN (@, @)") == ["CT", "MR"]


async def test_limit_and_offset_are_bound(conn: AsyncConnection) -> None:
    """Paging values are parameters: another page is the same statement."""
    cache = StatementCache()
    query = parse_qido([("Modality", "CT")], resource=Resource.SERIES)
    page = _page(conn, query, limit=25, offset=50, cache=cache)
    assert page.bound("LIMIT @ OFFSET @") == [25, 50]
    other = _page(conn, query, limit=7, offset=3, cache=cache)
    assert other.sql == page.sql
    assert len(cache) == 1
    assert other.bound("LIMIT @ OFFSET @") == [7, 3]
    # a study page walks two index-ordered branches, each cut at offset + limit rows
    studies = _page(conn, _studies(), limit=25, offset=50)
    assert studies.bound("LIMIT @", 0) == studies.bound("LIMIT @", 1) == [75]
    assert studies.bound("LIMIT @ OFFSET @", -1) == [25, 50]


async def test_scoped_grant(conn: AsyncConnection) -> None:
    """A scoped grant's study UIDs and patient IDs are conditions, at every level."""
    grant = StudyRestriction(study_uids=frozenset({"1.9.2", "1.9.1"}), patient_ids=frozenset({"P"}))
    query = parse_qido([], resource=Resource.INSTANCES)
    page = _page(conn, query, restrict=grant)
    assert "JOIN study ON instance.study_id = study.id" in page.sql
    assert page.bound("study.study_uid IN (@, @)") == ["1.9.1", "1.9.2"]
    assert page.bound("study.patient_id IN (@)") == ["P"]


async def test_empty_grant_runs_through_sqlalchemy(conn: AsyncConnection) -> None:
    """An empty IN list is rendered at execution time: no cached text for that shape, the
    statement runs through SQLAlchemy instead (and matches nothing)."""
    sqlite = conn.dialect.name == "sqlite"
    nothing = StudyRestriction(study_uids=frozenset())
    query = parse_qido([], resource=Resource.INSTANCES)
    b, build = page_plan(query, limit=10, offset=0, sqlite=sqlite, restrict=nothing)
    assert StatementCache().template(conn.dialect, b, build) is None
    found = await search(conn, query, limit=10, offset=0, restrict=nothing)
    assert found == ([], 0, True)


async def test_hostile_value_is_only_a_parameter(conn: AsyncConnection) -> None:
    """SQL in a value is never SQL text: it is bound, and runs as a value (matching nothing)."""
    for key in ("PatientID", "AccessionNumber", "StudyDescription"):
        page = _page(conn, _studies((key, HOSTILE)))
        assert HOSTILE in page.parameters
        assert "OR 1=1" not in page.sql
        assert "--" not in page.sql
        wildcard = _page(conn, _studies((key, HOSTILE + "*")))
        assert not any("OR 1=1" in literal for literal in wildcard.literals())
        assert any(isinstance(p, str) and "OR 1=1" in p for p in wildcard.parameters)
    # and it runs: no error, no match
    hits, total, exact = await search(
        conn, _studies(("PatientID", HOSTILE)), limit=10, offset=0, count_limit=100
    )
    assert (hits, total, exact) == ([], 0, True)


async def test_same_shape_same_sql(conn: AsyncConnection) -> None:
    """The cache returns one statement per shape: values never change the SQL."""
    cache = StatementCache()
    first = _page(conn, _studies(("PatientID", "A"), ("StudyDate", "20240101-")), cache=cache)
    again = _page(conn, _studies(("PatientID", "B"), ("StudyDate", "20250101-")), cache=cache)
    assert again.sql == first.sql
    assert len(cache) == 1
    assert first.bound("study.patient_id = @") == ["A"]
    assert again.bound("study.patient_id = @") == ["B"]
    _page(conn, _studies(("PatientID", "A*"), ("StudyDate", "20240101-")), cache=cache)
    _page(conn, _studies(("PatientID", "A"), ("StudyDate", "-20240101")), cache=cache)
    assert len(cache) == 3  # a wildcard, a range's other end: other shapes
    assert len(set(cache.texts())) == 3
    assert cache.texts()[0] == first.sql


async def test_count_statement(conn: AsyncConnection) -> None:
    """A capped count stops after cap + 1 matches; the cap is bound as well."""
    sqlite = conn.dialect.name == "sqlite"
    query = _studies(("PatientID", HOSTILE))
    b, build = count_plan(query, sqlite=sqlite, restrict=None, cap=1000)
    template = StatementCache().template(conn.dialect, b, build)
    assert template is not None
    count = Compiled(conn.dialect, template, b.values)
    assert count.literals() <= _ESCAPES
    assert count.sql.startswith("SELECT count(*) AS count_1 \nFROM (SELECT ")
    assert count.bound("study.patient_id = @") == [HOSTILE]
    assert 1001 in count.parameters
    # the text and parameters as the driver takes them: the value counts as a value
    assert (await conn.exec_driver_sql(count.sql, count.parameters)).scalar_one() == 0


def test_pattern_doctests() -> None:
    """The examples of the pattern helpers' docstrings hold (``make test`` runs no doctest of
    app/index)."""
    failed, attempted = doctest.testmod(predicates)
    assert attempted >= 4
    assert failed == 0


@pytest.mark.parametrize("name", ["PatientName", "ReferringPhysicianName"])
async def test_person_names_match_normalised(conn: AsyncConnection, name: str) -> None:
    """A name matches its normalised column with its normalised value (QIDO-06)."""
    page = _page(conn, _studies((name, "müller^jürgen")))
    column = "patient_name_norm" if name == "PatientName" else "referring_physician_name_norm"
    assert page.bound(f"study.{column} = @") == ["MULLER^JURGEN"]


async def test_a_folded_wildcard(conn: AsyncConnection) -> None:
    """The pages' case-insensitive "contains" (``Wildcard(folded=True)``): ``ILIKE`` on
    PostgreSQL (its trigram indexes serve it), ``LIKE`` on SQLite (ASCII case folded)."""
    query = _studies(("StudyDescription", "*knee%*"))
    folded = replace(query, filters={"StudyDescription": Wildcard("*knee%*", folded=True)})
    page = _page(conn, folded)
    operator = "LIKE" if conn.dialect.name == "sqlite" else "ILIKE"
    assert page.bound(f"study.study_description {operator} @ ESCAPE '\\'") == ["%knee\\%%"]


@pytest.mark.parametrize("descending", [False, True])
async def test_a_sorted_study_page(conn: AsyncConnection, descending: bool) -> None:
    """A study list in another order walks the key's index: the column (SQLite: its index
    holds the rowid) or its indexed prefix (PostgreSQL), then the primary key, one direction."""
    query = replace(_studies(), order=SortOrder("PatientName", descending=descending))
    page = _page(conn, query, limit=10, offset=20)
    way = "DESC" if descending else "ASC"
    column = (
        "study.patient_name_norm"
        if conn.dialect.name == "sqlite"
        else "substr(study.patient_name_norm, 1, 500)"
    )
    assert f"ORDER BY {column} {way}, study.id {way}" in page.sql
    assert "UNION ALL" not in page.sql  # not the StudyDate plan's two branches
    dated = _page(conn, replace(_studies(), order=SortOrder("StudyDate")))
    assert "ORDER BY study.study_date ASC, study.study_time ASC, study.id ASC" in dated.sql
    # the order is part of the shape: another order, another statement
    assert _page(conn, replace(_studies(), order=SortOrder("PatientID"))).sql != page.sql

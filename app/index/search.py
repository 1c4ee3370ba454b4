"""A :class:`~app.dicom.query.Query` compiled to SQL over the index (DESIGN.md §6).

Every value is a bound parameter. Wildcards become ``LIKE`` with ``%``, ``_`` and the escape
character itself escaped (on SQLite, whose ``LIKE`` ignores ASCII case, ``GLOB`` with bracketed
metacharacters, so that matching stays case-sensitive, QIDO-06). Person names match on the
normalised ``*_norm`` columns. ModalitiesInStudy is an ``EXISTS`` over the study's series.
Multi-valued columns (backslash-joined values, QIDO-13) match when any one value matches.

A search at the series or instance level joins its parents (series -> study, instance -> series
and study), so study and series keys, the path UIDs and the caller's
:class:`~app.dicom.query.StudyRestriction` all become conditions of one statement.

A page is one statement in a stable order (QIDO-18), ModalitiesInStudy included as a correlated
subquery (no N+1, no second round trip), plus, only when the page is full or empty past an
offset, a ``COUNT(*)`` for the total.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from app.dicom.attributes import Level
from app.dicom.query import (
    DateRange,
    DateTimeRange,
    FuzzyName,
    Matcher,
    Number,
    Query,
    Resource,
    Single,
    StudyRestriction,
    TimeRange,
    Universal,
    ValueList,
    Wildcard,
)
from app.dicom.text import normalize_pn
from app.index.models import Instance, Series, Study

__all__ = [
    "Hit",
    "count_statement",
    "glob_pattern",
    "like_pattern",
    "page_statement",
    "search",
]

ESCAPE = "\\"
#: escape character inside multi-valued columns, whose delimiter is the backslash
MULTI_ESCAPE = "!"

COLUMNS: dict[str, Any] = {
    "StudyInstanceUID": Study.study_uid,
    "PatientID": Study.patient_id,
    "PatientName": Study.patient_name_norm,
    "IssuerOfPatientID": Study.issuer_of_patient_id,
    "PatientBirthDate": Study.patient_birth_date,
    "PatientSex": Study.patient_sex,
    "AccessionNumber": Study.accession_number,
    "StudyID": Study.study_id,
    "ReferringPhysicianName": Study.referring_physician_name_norm,
    "StudyDescription": Study.study_description,
    "StudyDate": Study.study_date,
    "StudyTime": Study.study_time,
    "NumberOfStudyRelatedSeries": Study.num_series,
    "NumberOfStudyRelatedInstances": Study.num_instances,
    "SeriesInstanceUID": Series.series_uid,
    "Modality": Series.modality,
    "SeriesNumber": Series.series_number,
    "SeriesDescription": Series.series_description,
    "SeriesDate": Series.series_date,
    "SeriesTime": Series.series_time,
    "BodyPartExamined": Series.body_part_examined,
    "PerformedProcedureStepStartDate": Series.pps_start_date,
    "PerformedProcedureStepStartTime": Series.pps_start_time,
    "RequestAttributesSequence.ScheduledProcedureStepID": Series.scheduled_procedure_step_ids,
    "RequestAttributesSequence.RequestedProcedureID": Series.requested_procedure_ids,
    "NumberOfSeriesRelatedInstances": Series.num_instances,
    "SOPInstanceUID": Instance.sop_uid,
    "SOPClassUID": Instance.sop_class_uid,
    "InstanceNumber": Instance.instance_number,
    "Rows": Instance.rows,
    "Columns": Instance.columns,
    "BitsAllocated": Instance.bits_allocated,
    "NumberOfFrames": Instance.number_of_frames,
}
_PN_KEYS = frozenset({"PatientName", "ReferringPhysicianName"})
#: aliases of ``series`` for the ModalitiesInStudy subqueries (built once: aliasing is costly)
_STUDY_SERIES: Any = Series.__table__.alias("study_series")
_MODS: Any = Series.__table__.alias("mods")
_MULTI_KEYS = frozenset(
    {
        "RequestAttributesSequence.ScheduledProcedureStepID",
        "RequestAttributesSequence.RequestedProcedureID",
    }
)


@dataclass(frozen=True, slots=True)
class StudyPart:
    """The study a hit belongs to, with what its object needs besides stored JSON."""

    id: int
    num_series: int
    num_instances: int
    attrs_json: bytes
    modalities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SeriesPart:
    num_instances: int
    attrs_json: bytes


@dataclass(frozen=True, slots=True)
class Hit:
    """One result: its UIDs and the stored objects of the levels the resource returns."""

    study_uid: str
    series_uid: str | None = None
    sop_uid: str | None = None
    study: StudyPart | None = None
    series: SeriesPart | None = None
    instance_json: bytes | None = None


def like_pattern(pattern: str, escape: str = ESCAPE) -> str:
    """A DICOM wildcard pattern as a ``LIKE`` pattern with ``escape`` as the escape character.

    >>> like_pattern("*MUL?ER*")
    '%MUL_ER%'
    >>> like_pattern("50%_a\\\\b*")
    '50\\\\%\\\\_a\\\\\\\\b%'
    >>> like_pattern("a!b%", "!")
    'a!!b!%'
    """
    out = []
    for c in pattern:
        if c in ("%", "_", escape):
            out.append(escape + c)
        elif c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        else:
            out.append(c)
    return "".join(out)


def literal_like(text: str, escape: str = ESCAPE) -> str:
    """``text`` with the ``LIKE`` metacharacters escaped (no wildcards at all).

    >>> literal_like("A*B%")
    'A*B\\\\%'
    """
    return "".join(escape + c if c in ("%", "_", escape) else c for c in text)


def glob_pattern(pattern: str) -> str:
    """A DICOM wildcard pattern as an SQLite ``GLOB`` pattern (case-sensitive).

    >>> glob_pattern("*A[1]?*")
    '*A[[]1]?*'
    """
    return "".join("[[]" if c == "[" else c for c in pattern)


def _wildcard(column: Any, pattern: str, *, sqlite: bool) -> ColumnElement[bool]:
    if sqlite:
        glob: ColumnElement[bool] = column.op("GLOB")(glob_pattern(pattern))
        return glob
    like: ColumnElement[bool] = column.like(like_pattern(pattern), escape=ESCAPE)
    return like


def _multi(column: Any, matcher: Matcher, *, sqlite: bool) -> ColumnElement[bool] | None:
    """QIDO-13 on a backslash-joined column: any one of its values matches."""
    framed = literal("\\") + column + literal("\\")
    if isinstance(matcher, Single | ValueList):
        values = (matcher.value,) if isinstance(matcher, Single) else matcher.values
        finder = func.instr if sqlite else func.strpos
        return or_(false(), *(finder(framed, "\\" + v + "\\") > 0 for v in values))
    if isinstance(matcher, Wildcard):
        if sqlite:
            glob: ColumnElement[bool] = framed.op("GLOB")(
                "*\\" + glob_pattern(matcher.pattern) + "\\*"
            )
            return glob
        pattern = "%\\" + like_pattern(matcher.pattern, MULTI_ESCAPE) + "\\%"
        like: ColumnElement[bool] = framed.like(pattern, escape=MULTI_ESCAPE)
        return like
    return None


def _fuzzy(column: Any, words: Sequence[str]) -> ColumnElement[bool]:
    """QIDO-14: each word the prefix of a component (``^``, ``=`` or space separated)."""
    components = literal("^") + func.replace(func.replace(column, "=", "^"), " ", "^")
    return and_(
        true(), *(components.like("%^" + literal_like(w) + "%", escape=ESCAPE) for w in words)
    )


def _condition(key: str, matcher: Matcher, *, sqlite: bool) -> ColumnElement[bool] | None:
    column = COLUMNS[key]
    pn = key in _PN_KEYS
    if isinstance(matcher, Universal):
        return None
    if key in _MULTI_KEYS:
        return _multi(column, matcher, sqlite=sqlite)
    if isinstance(matcher, Single):
        equal: ColumnElement[bool] = column == (
            normalize_pn(matcher.value) if pn else matcher.value
        )
        return equal
    if isinstance(matcher, Number):
        number: ColumnElement[bool] = column == matcher.value
        return number
    if isinstance(matcher, Wildcard):
        return _wildcard(
            column, normalize_pn(matcher.pattern) if pn else matcher.pattern, sqlite=sqlite
        )
    if isinstance(matcher, FuzzyName):
        return _fuzzy(column, matcher.words)
    if isinstance(matcher, ValueList):
        among: ColumnElement[bool] = column.in_(matcher.values)
        return among
    if isinstance(matcher, DateRange | TimeRange):
        parts = []
        if matcher.low is not None:
            parts.append(column >= matcher.low)
        if matcher.high is not None:
            parts.append(column <= matcher.high)
        return and_(true(), *parts)
    if isinstance(matcher, DateTimeRange):
        time = func.coalesce(COLUMNS[matcher.time_key], "")
        parts = []
        if matcher.low is not None:
            d, t = matcher.low
            parts.append(or_(column > d, and_(column == d, time >= t)))
        if matcher.high is not None:
            d, t = matcher.high
            parts.append(or_(column < d, and_(column == d, time <= t)))
        return and_(true(), *parts)
    raise TypeError(f"unknown matcher {matcher!r}")


def _modalities_condition(matcher: Matcher, *, sqlite: bool) -> ColumnElement[bool] | None:
    """QIDO-13: some series of the study has a listed modality (an alias: the outer query may
    already range over ``series``)."""
    other = _STUDY_SERIES
    column = other.c.modality
    if isinstance(matcher, ValueList):
        among: ColumnElement[bool] = column.in_(matcher.values)
    elif isinstance(matcher, Wildcard):
        among = _wildcard(column, matcher.pattern, sqlite=sqlite)
    elif isinstance(matcher, Single):
        among = column == matcher.value
    else:
        return None
    found: ColumnElement[bool] = (
        exists().where(other.c.study_id == Study.id, among).correlate(Study)
    )
    return found


def restriction_conditions(restrict: StudyRestriction | None) -> list[ColumnElement[bool]]:
    """The study-table conditions of a scoped grant (applied at every level)."""
    if restrict is None:
        return []
    conditions: list[ColumnElement[bool]] = []
    if restrict.study_uids is not None:
        conditions.append(Study.study_uid.in_(sorted(restrict.study_uids)))
    if restrict.patient_ids is not None:
        conditions.append(Study.patient_id.in_(sorted(restrict.patient_ids)))
    return conditions


def conditions(
    query: Query, *, sqlite: bool, restrict: StudyRestriction | None = None
) -> list[ColumnElement[bool]]:
    """Every condition of ``query``: match keys, path UIDs and the restriction."""
    out: list[ColumnElement[bool]] = []
    for key, matcher in query.filters.items():
        if key == "ModalitiesInStudy":
            condition = _modalities_condition(matcher, sqlite=sqlite)
        else:
            condition = _condition(key, matcher, sqlite=sqlite)
        if condition is not None:
            out.append(condition)
    if query.study_uid is not None:
        out.append(Study.study_uid == query.study_uid)
    if query.series_uid is not None:
        out.append(Series.series_uid == query.series_uid)
    out.extend(restriction_conditions(restrict))
    return out


def _tables_used(query: Query, restrict: StudyRestriction | None) -> set[str]:
    """The tables the conditions of ``query`` read (the ones a page must join)."""
    used: set[str] = set()
    for key, matcher in query.filters.items():
        if isinstance(matcher, Universal):
            continue
        used.add("study" if key == "ModalitiesInStudy" else COLUMNS[key].table.name)
    if query.study_uid is not None or (restrict is not None and not restrict.unrestricted):
        used.add("study")
    if query.series_uid is not None:
        used.add("series")
    return used


def _from(stmt: Select[Any], level: Level, tables: set[str] | None = None) -> Select[Any]:
    """``stmt`` over the level's table joined to the parents in ``tables`` (all if None)."""
    if level is Level.STUDY:
        return stmt.select_from(Study)
    if level is Level.SERIES:
        stmt = stmt.select_from(Series)
        if tables is None or "study" in tables:
            stmt = stmt.join(Study, Series.study_id == Study.id)
        return stmt
    stmt = stmt.select_from(Instance)
    if tables is None or "series" in tables:
        stmt = stmt.join(Series, Instance.series_id == Series.id)
    if tables is None or "study" in tables:
        stmt = stmt.join(Study, Instance.study_id == Study.id)
    return stmt


def _order(resource: Resource) -> list[Any]:
    """A stable order per resource (QIDO-18); the primary key breaks every tie."""
    if resource is Resource.STUDIES:
        return [Study.study_date.desc().nulls_last(), Study.id]
    if resource is Resource.STUDY_SERIES:
        return [Series.series_number.nulls_last(), Series.id]
    if resource is Resource.SERIES:
        return [Series.id]
    if resource is Resource.SERIES_INSTANCES:
        return [Instance.instance_number.nulls_last(), Instance.id]
    if resource is Resource.STUDY_INSTANCES:
        return [Instance.series_id, Instance.instance_number.nulls_last(), Instance.id]
    return [Instance.id]


def _modalities_column(*, sqlite: bool) -> Any:
    """ModalitiesInStudy of the outer study row, comma-joined, as a correlated subquery."""
    other = _MODS
    distinct = other.c.modality.distinct()
    joined = func.group_concat(distinct) if sqlite else func.string_agg(distinct, literal(","))
    return (
        select(joined)
        .where(other.c.study_id == Study.id)
        .correlate(Study)
        .scalar_subquery()
        .label("st_modalities")
    )


def page_statement(
    query: Query,
    *,
    limit: int,
    offset: int,
    sqlite: bool,
    restrict: StudyRestriction | None = None,
) -> Select[Any]:
    """The one statement of a page: matches, in the resource's stable order (QIDO-18).

    An inner query finds the primary keys of the page, joining only the parent tables the
    conditions read and carrying only the sort keys; the outer query then reads the stored JSON
    and computes ModalitiesInStudy for those rows alone (never for rows skipped by the offset).
    """
    level = query.level
    pk = {Level.STUDY: Study.id, Level.SERIES: Series.id, Level.INSTANCE: Instance.id}[level]
    order = _order(query.resource)
    where = conditions(query, sqlite=sqlite, restrict=restrict)
    tables = _tables_used(query, restrict) | {c.table.name for c in _order_columns(order)}
    if query.resource is Resource.STUDIES:
        page = _study_page(where, limit=limit, offset=offset)
    else:
        page = (
            _from(select(pk.label("pk")), level, tables)
            .where(*where)
            .order_by(*order)
            .limit(limit)
            .offset(offset)
            .subquery("page")
        )
    returned = query.resource.returned_levels
    columns: list[Any] = [Study.study_uid]
    if Level.STUDY in returned:
        columns += [
            Study.id.label("st_id"),
            Study.num_series.label("st_series"),
            Study.num_instances.label("st_instances"),
            Study.attrs_json.label("st_json"),
            _modalities_column(sqlite=sqlite),
        ]
    if level is not Level.STUDY:
        columns.append(Series.series_uid)
        if Level.SERIES in returned:
            columns += [
                Series.num_instances.label("se_instances"),
                Series.attrs_json.label("se_json"),
            ]
    if level is Level.INSTANCE:
        columns += [Instance.sop_uid, Instance.attrs_json.label("instance_json")]
    outer = _from(select(*columns), level).join(page, page.c.pk == pk)
    return outer.order_by(*order)


def _study_page(where: list[ColumnElement[bool]], *, limit: int, offset: int) -> Any:
    """The keys of a study page in StudyDate-descending order, no date last, then id.

    ``ORDER BY study_date DESC NULLS LAST`` cannot walk an index on both databases (SQLite has
    no NULLS LAST in index definitions), so the page is the union of two index-ordered
    branches, each cut at ``offset + limit`` rows: dated studies along ``ix_study_list_order``
    (``study_date DESC, id``), then undated ones by id. An unfiltered study list then reads
    ``offset + limit`` index entries instead of sorting the whole table.
    """
    depth = offset + limit
    dated = (
        select(Study.id.label("pk"), Study.study_date.label("d"), literal(0).label("undated"))
        .where(*where, Study.study_date.is_not(None))
        .order_by(Study.study_date.desc(), Study.id)
        .limit(depth)
        .subquery("dated")
    )
    undated = (
        select(Study.id.label("pk"), Study.study_date.label("d"), literal(1).label("undated"))
        .where(*where, Study.study_date.is_(None))
        .order_by(Study.id)
        .limit(depth)
        .subquery("undated")
    )
    both = union_all(select(dated), select(undated)).subquery("branches")
    return (
        select(both.c.pk)
        .order_by(both.c.undated, both.c.d.desc(), both.c.pk)
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )


def _order_columns(order: list[Any]) -> list[Any]:
    """The table columns inside ORDER BY clauses (``desc()``/``nulls_last()`` unwrapped)."""
    out = []
    for clause in order:
        element = clause
        while hasattr(element, "element") and not hasattr(element, "table"):
            element = element.element
        out.append(element)
    return out


def count_statement(
    query: Query, *, sqlite: bool, restrict: StudyRestriction | None = None, cap: int = 0
) -> Select[Any]:
    """How many match in all (only run when the page does not tell); with ``cap``, counting
    stops after ``cap + 1`` matches."""
    where = conditions(query, sqlite=sqlite, restrict=restrict)
    tables = _tables_used(query, restrict)
    if not cap:
        return _from(select(func.count()), query.level, tables).where(*where)
    matches = _from(select(literal(1).label("one")), query.level, tables).where(*where)
    return select(func.count()).select_from(matches.limit(cap + 1).subquery("matches"))


async def search(
    conn: AsyncConnection,
    query: Query,
    *,
    limit: int,
    offset: int,
    restrict: StudyRestriction | None = None,
    count_limit: int = 0,
) -> tuple[list[Hit], int, bool]:
    """The page ``[offset, offset + limit)`` of what matches ``query``, the total count, and
    whether that count is exact.

    The count query runs only when the page is full or empty past an offset: a short page
    already says how many match. With ``count_limit`` (never below ``offset + limit``) it stops
    counting past that many matches, and the total is then a lower bound (``exact`` false).
    """
    level = query.level
    sqlite = conn.dialect.name == "sqlite"
    want_study = Level.STUDY in query.resource.returned_levels
    want_series = Level.SERIES in query.resource.returned_levels
    rows: Sequence[Any] = []
    if limit > 0:
        stmt = page_statement(query, limit=limit, offset=offset, sqlite=sqlite, restrict=restrict)
        rows = (await conn.execute(stmt)).all()
    exact = True
    if rows and len(rows) < limit:
        total = offset + len(rows)
    elif not rows and offset == 0 and limit > 0:
        total = 0
    else:
        cap = max(count_limit, offset + limit) if count_limit else 0
        count = count_statement(query, sqlite=sqlite, restrict=restrict, cap=cap)
        total = (await conn.execute(count)).scalar_one()
        if cap and total > cap:
            total, exact = cap, False
    hits = []
    for r in rows:
        study = series = None
        if want_study:
            mods = tuple(sorted(set(r.st_modalities.split(",")))) if r.st_modalities else ()
            study = StudyPart(r.st_id, r.st_series, r.st_instances, r.st_json, mods)
        if want_series:
            series = SeriesPart(r.se_instances, r.se_json)
        hits.append(
            Hit(
                study_uid=r.study_uid,
                series_uid=r.series_uid if level is not Level.STUDY else None,
                sop_uid=r.sop_uid if level is Level.INSTANCE else None,
                study=study,
                series=series,
                instance_json=r.instance_json if level is Level.INSTANCE else None,
            )
        )
    return hits, total, exact

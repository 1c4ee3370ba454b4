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

Statements are compiled once per query *shape* (:class:`StatementCache`, bounded, least recently
used dropped first): each builder hands its values to a :class:`_Binder` (named bound parameters,
paging included) and returns how to construct its SQL, which runs only when the shape is not
cached. A search then costs no SQLAlchemy construction, cache-key generation or compilation: the
cached SQL text runs through the driver (``exec_driver_sql``) with the request's values.
"""

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Result,
    Select,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.engine import Dialect
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
from app.index.models import PREFIX_INDEXED, Instance, Series, Study, index_prefix

__all__ = [
    "STATEMENTS",
    "Hit",
    "StatementCache",
    "conditions",
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
#: keys whose column PostgreSQL indexes by its prefix only: an equality there compares the prefix
#: as well, the one condition that index can serve (the whole value decides the match)
_PREFIXED_KEYS = frozenset(
    key for key, column in COLUMNS.items() if any(column is c for c in PREFIX_INDEXED)
)
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


class _Param:
    """One value of a statement: the bound parameter ``name`` (never inlined into the SQL)."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: Any) -> None:
        self.name = name
        self.value = value

    def sql(self) -> Any:
        """The bound parameter, typed from its value (as SQLAlchemy types a plain value; an
        integer as BIGINT, the type of the DICOM integer columns: IS goes beyond 32 bits)."""
        if type(self.value) is int:
            return bindparam(self.name, self.value, type_=BigInteger())
        return bindparam(self.name, self.value)


class _Binder:
    """The values of one statement, in order, and its *shape*: everything but the values.

    The builders below run in two steps: first they hand every value to the binder (which
    names it ``qv_0``, ``qv_1``, ... and records a label saying where it goes) and mark the
    keys and variants that decide the SQL, returning a closure; only when no statement of that
    shape is cached is the closure called to construct the SQLAlchemy statement, with the same
    parameters. One function therefore decides both the SQL of a match and its values.
    """

    __slots__ = ("shape", "sqlite", "values")

    def __init__(self, sqlite: bool, *shape: Hashable) -> None:
        self.sqlite = sqlite
        self.values: list[Any] = []
        self.shape: list[Hashable] = [sqlite, *shape]

    def __call__(self, value: Any, label: str) -> _Param:
        self.shape.append(label)
        self.values.append(value)
        return _Param(f"{_PREFIX}{len(self.values) - 1}", value)

    def mark(self, token: Hashable) -> None:
        self.shape.append(token)


#: the names of the request's bound parameters (``qv_0``, ...; SQLAlchemy's own are ``x_1``)
_PREFIX = "qv_"
Lazy = Callable[[], ColumnElement[bool]]


def _wildcard(b: _Binder, column: Any, pattern: str) -> Lazy:
    if b.sqlite:
        glob = b(glob_pattern(pattern), "glob")
        return lambda: column.op("GLOB")(glob.sql())
    like = b(like_pattern(pattern), "like")
    return lambda: column.like(like.sql(), escape=ESCAPE)


def _multi(b: _Binder, column: Any, matcher: Matcher) -> Lazy | None:
    """QIDO-13 on a backslash-joined column: any one of its values matches."""

    def framed() -> Any:
        return literal("\\") + column + literal("\\")

    if isinstance(matcher, Single | ValueList):
        values = (matcher.value,) if isinstance(matcher, Single) else matcher.values
        finder = func.instr if b.sqlite else func.strpos
        items = [b("\\" + v + "\\", "in") for v in values]

        def any_of() -> ColumnElement[bool]:
            whole = framed()
            return or_(false(), *(finder(whole, item.sql()) > 0 for item in items))

        return any_of
    if isinstance(matcher, Wildcard):
        if b.sqlite:
            glob = b("*\\" + glob_pattern(matcher.pattern) + "\\*", "glob")
            return lambda: framed().op("GLOB")(glob.sql())
        like = b("%\\" + like_pattern(matcher.pattern, MULTI_ESCAPE) + "\\%", "like")
        return lambda: framed().like(like.sql(), escape=MULTI_ESCAPE)
    return None


def _fuzzy(b: _Binder, column: Any, words: Sequence[str]) -> Lazy:
    """QIDO-14: each word the prefix of a component (``^``, ``=`` or space separated)."""
    prefixes = [b("%^" + literal_like(w) + "%", "like") for w in words]

    def every() -> ColumnElement[bool]:
        components = literal("^") + func.replace(func.replace(column, "=", "^"), " ", "^")
        return and_(true(), *(components.like(p.sql(), escape=ESCAPE) for p in prefixes))

    return every


def _range(b: _Binder, column: Any, low: Any, high: Any) -> Lazy:
    bounds = [(b(low, "ge"), True)] if low is not None else []
    if high is not None:
        bounds.append((b(high, "le"), False))
    return lambda: and_(
        true(), *(column >= p.sql() if ge else column <= p.sql() for p, ge in bounds)
    )


def _date_time_range(b: _Binder, column: Any, matcher: DateTimeRange) -> Lazy:
    time = COLUMNS[matcher.time_key]
    bounds = [
        (b(bound[0], "date"), b(bound[1], "after" if after else "before"), after)
        for bound, after in ((matcher.low, True), (matcher.high, False))
        if bound is not None
    ]

    def between() -> ColumnElement[bool]:
        t = func.coalesce(time, "")
        parts = []
        for day, moment, after in bounds:
            d = day.sql()
            if after:
                parts.append(or_(column > d, and_(column == d, t >= moment.sql())))
            else:
                parts.append(or_(column < d, and_(column == d, t <= moment.sql())))
        return and_(true(), *parts)

    return between


def _equal(b: _Binder, column: Any, value: Any, *, prefixed: bool = False) -> Lazy:
    p = b(value, "eq")
    if prefixed and not b.sqlite:
        return lambda: and_(index_prefix(column) == index_prefix(p.sql()), column == p.sql())
    return lambda: column == p.sql()


def _among(b: _Binder, column: Any, values: Sequence[str], *, prefixed: bool = False) -> Lazy:
    items = [b(v, "in") for v in values]
    if prefixed and not b.sqlite:
        return lambda: and_(
            index_prefix(column).in_([index_prefix(p.sql()) for p in items]),
            column.in_([p.sql() for p in items]),
        )
    return lambda: column.in_([p.sql() for p in items])


def _condition(b: _Binder, key: str, matcher: Matcher) -> Lazy | None:
    column = COLUMNS[key]
    pn = key in _PN_KEYS
    if isinstance(matcher, Universal):
        return None
    if key in _MULTI_KEYS:
        return _multi(b, column, matcher)
    prefixed = key in _PREFIXED_KEYS
    if isinstance(matcher, Single):
        value = normalize_pn(matcher.value) if pn else matcher.value
        return _equal(b, column, value, prefixed=prefixed)
    if isinstance(matcher, Number):
        return _equal(b, column, matcher.value)
    if isinstance(matcher, Wildcard):
        return _wildcard(b, column, normalize_pn(matcher.pattern) if pn else matcher.pattern)
    if isinstance(matcher, FuzzyName):
        return _fuzzy(b, column, matcher.words)
    if isinstance(matcher, ValueList):
        return _among(b, column, matcher.values, prefixed=prefixed)
    if isinstance(matcher, DateRange | TimeRange):
        return _range(b, column, matcher.low, matcher.high)
    if isinstance(matcher, DateTimeRange):
        return _date_time_range(b, column, matcher)
    raise TypeError(f"unknown matcher {matcher!r}")


def _modalities_condition(b: _Binder, matcher: Matcher) -> Lazy | None:
    """QIDO-13: some series of the study has a listed modality (an alias: the outer query may
    already range over ``series``)."""
    other = _STUDY_SERIES
    column = other.c.modality
    if isinstance(matcher, ValueList):
        among = _among(b, column, matcher.values, prefixed=True)
    elif isinstance(matcher, Wildcard):
        among = _wildcard(b, column, matcher.pattern)
    elif isinstance(matcher, Single):
        among = _equal(b, column, matcher.value, prefixed=True)
    else:
        return None
    return lambda: exists().where(other.c.study_id == Study.id, among()).correlate(Study)


def _restriction(b: _Binder, restrict: StudyRestriction | None) -> list[Lazy]:
    """The study-table conditions of a scoped grant (applied at every level)."""
    if restrict is None:
        return []
    b.mark(("restrict", restrict.study_uids is None, restrict.patient_ids is None))
    out: list[Lazy] = []
    if restrict.study_uids is not None:
        out.append(_among(b, Study.study_uid, sorted(restrict.study_uids)))
    if restrict.patient_ids is not None:
        out.append(_among(b, Study.patient_id, sorted(restrict.patient_ids), prefixed=True))
    return out


def _conditions(b: _Binder, query: Query, restrict: StudyRestriction | None) -> list[Lazy]:
    """Every condition of ``query``: match keys, path UIDs and the restriction."""
    out: list[Lazy] = []
    for key, matcher in query.filters.items():
        b.mark((key, type(matcher).__name__))
        if key == "ModalitiesInStudy":
            condition = _modalities_condition(b, matcher)
        else:
            condition = _condition(b, key, matcher)
        if condition is not None:
            out.append(condition)
    if query.study_uid is not None:
        b.mark("path-study")
        out.append(_equal(b, Study.study_uid, query.study_uid))
    if query.series_uid is not None:
        b.mark("path-series")
        out.append(_equal(b, Series.series_uid, query.series_uid))
    out.extend(_restriction(b, restrict))
    return out


def conditions(
    query: Query, *, sqlite: bool, restrict: StudyRestriction | None = None
) -> list[ColumnElement[bool]]:
    """Every condition of ``query`` as SQLAlchemy expressions (values as bound parameters)."""
    return [build() for build in _conditions(_Binder(sqlite), query, restrict)]


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


def _page_plan(
    query: Query,
    *,
    limit: int,
    offset: int,
    sqlite: bool,
    restrict: StudyRestriction | None,
) -> tuple[_Binder, Callable[[], Select[Any]]]:
    """The values of a page statement, its shape, and how to construct it.

    An inner query finds the primary keys of the page, joining only the parent tables the
    conditions read and carrying only the sort keys; the outer query then reads the stored JSON
    and computes ModalitiesInStudy for those rows alone (never for rows skipped by the offset).
    """
    b = _Binder(sqlite, "page", query.resource)
    where = _conditions(b, query, restrict)
    if query.resource is Resource.STUDIES:
        depth = b(offset + limit, "depth")
    size, skip = b(limit, "limit"), b(offset, "offset")

    def build() -> Select[Any]:
        level = query.level
        pk = {Level.STUDY: Study.id, Level.SERIES: Series.id, Level.INSTANCE: Instance.id}[level]
        order = _order(query.resource)
        conditions = [condition() for condition in where]
        if query.resource is Resource.STUDIES:
            page = _study_page(conditions, limit=size.sql(), offset=skip.sql(), depth=depth.sql())
        else:
            tables = _tables_used(query, restrict) | {c.table.name for c in _order_columns(order)}
            page = (
                _from(select(pk.label("pk")), level, tables)
                .where(*conditions)
                .order_by(*order)
                .limit(size.sql())
                .offset(skip.sql())
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

    return b, build


def page_statement(
    query: Query,
    *,
    limit: int,
    offset: int,
    sqlite: bool,
    restrict: StudyRestriction | None = None,
) -> Select[Any]:
    """The one statement of a page: matches, in the resource's stable order (QIDO-18)."""
    _, build = _page_plan(query, limit=limit, offset=offset, sqlite=sqlite, restrict=restrict)
    return build()


def _study_page(where: list[ColumnElement[bool]], *, limit: Any, offset: Any, depth: Any) -> Any:
    """The keys of a study page in StudyDate-descending order, no date last, then id.

    ``ORDER BY study_date DESC NULLS LAST`` cannot walk an index on both databases (SQLite has
    no NULLS LAST in index definitions), so the page is the union of two index-ordered
    branches, each cut at ``depth`` (``offset + limit``) rows: dated studies along
    ``ix_study_list_order`` (``study_date DESC, id``), then undated ones by id. An unfiltered
    study list then reads ``offset + limit`` index entries instead of sorting the whole table.
    """
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


def _count_plan(
    query: Query, *, sqlite: bool, restrict: StudyRestriction | None, cap: int
) -> tuple[_Binder, Callable[[], Select[Any]]]:
    """The values of a count statement, its shape, and how to construct it."""
    b = _Binder(sqlite, "count", query.resource, bool(cap))
    where = _conditions(b, query, restrict)
    upto = b(cap + 1, "cap") if cap else None

    def build() -> Select[Any]:
        conditions = [condition() for condition in where]
        tables = _tables_used(query, restrict)
        if upto is None:
            return _from(select(func.count()), query.level, tables).where(*conditions)
        matches = _from(select(literal(1).label("one")), query.level, tables).where(*conditions)
        return select(func.count()).select_from(matches.limit(upto.sql()).subquery("matches"))

    return b, build


def count_statement(
    query: Query, *, sqlite: bool, restrict: StudyRestriction | None = None, cap: int = 0
) -> Select[Any]:
    """How many match in all (only run when the page does not tell); with ``cap``, counting
    stops after ``cap + 1`` matches."""
    _, build = _count_plan(query, sqlite=sqlite, restrict=restrict, cap=cap)
    return build()


# --- the statement cache ---


@dataclass(frozen=True, slots=True)
class _Template:
    """A compiled statement of one shape: its SQL text and, per placeholder in order, where its
    value comes from (``index`` into the request's values, else the compiled constant ``value``)
    and the dialect's bind processor for it."""

    sql: str
    #: (index or -1, constant value, bind processor) per positional placeholder
    slots: tuple[tuple[int, Any, Callable[[Any], Any] | None], ...]
    #: the placeholder names, when the paramstyle is named (None: positional)
    names: tuple[str, ...] | None

    def parameters(self, values: list[Any]) -> tuple[Any, ...] | dict[str, Any]:
        out = tuple(
            value if i < 0 else (values[i] if process is None else process(values[i]))
            for i, value, process in self.slots
        )
        return out if self.names is None else dict(zip(self.names, out, strict=True))


def _compile(stmt: Select[Any], dialect: Dialect) -> _Template | None:
    """``stmt`` compiled once for ``dialect``, or None if it cannot be run from its text alone
    (parameters expanded at execution time)."""
    compiled: Any = stmt.compile(dialect=dialect)
    if compiled.literal_execute_params or compiled.post_compile_params:
        return None
    positional = compiled.positiontup is not None
    names = list(compiled.positiontup if positional else compiled.binds)
    processors = compiled._bind_processors  # the same processing a plain execute applies
    constants = compiled.construct_params()
    slots = []
    for name in names:
        process = processors.get(name)
        if name.startswith(_PREFIX):
            slots.append((int(name[len(_PREFIX) :]), None, process))
        else:  # a constant of the statement itself (``0``, ``'^'``), never a request value
            value = constants[name]
            slots.append((-1, value if process is None else process(value), None))
    return _Template(compiled.string, tuple(slots), None if positional else tuple(names))


class StatementCache:
    """Compiled statements by shape, least recently used dropped past ``size``.

    A shape is everything that decides the SQL text: the statement (page or count, capped or
    not), the resource, the dialect, and per match key its matcher kind and where each of its
    values goes (so list arity and range ends), the path UIDs and the restriction's form.
    Values are never part of a shape: they are bound parameters of every execution.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, _Template | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def template(
        self, dialect: Dialect, b: _Binder, build: Callable[[], Select[Any]]
    ) -> _Template | None:
        dialect_key = (dialect.name, dialect.driver, dialect.paramstyle)
        key: tuple[Hashable, ...] = (*dialect_key, dialect.server_version_info, *b.shape)
        try:
            self._entries.move_to_end(key)
            return self._entries[key]
        except KeyError:
            pass
        template = _compile(build(), dialect)
        self._entries[key] = template
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return template

    def clear(self) -> None:
        self._entries.clear()

    def texts(self) -> list[str]:
        """The SQL texts cached, least recently used first (to inspect the cache)."""
        return [t.sql for t in self._entries.values() if t is not None]


#: the process-wide statement cache of :func:`search`
STATEMENTS = StatementCache()


async def _execute(
    conn: AsyncConnection, plan: tuple[_Binder, Callable[[], Select[Any]]]
) -> Result[Any]:
    """Run a planned statement from its cached compiled text (constructed on a shape's first
    use), straight through the driver; the values are bound parameters."""
    b, build = plan
    template = STATEMENTS.template(conn.dialect, b, build)
    result: Result[Any]
    if template is None:
        result = await conn.execute(build())
    else:
        result = await conn.exec_driver_sql(template.sql, template.parameters(b.values))
    return result


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
        page = _page_plan(query, limit=limit, offset=offset, sqlite=sqlite, restrict=restrict)
        rows = (await _execute(conn, page)).all()
    exact = True
    if rows and len(rows) < limit:
        total = offset + len(rows)
    elif not rows and offset == 0 and limit > 0:
        total = 0
    else:
        cap = max(count_limit, offset + limit) if count_limit else 0
        count = _count_plan(query, sqlite=sqlite, restrict=restrict, cap=cap)
        total = (await _execute(conn, count)).scalar_one()
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

"""The statements of a search page (DESIGN.md §6): joins, stable order, page and count.

A search at the series or instance level joins its parents (series -> study, instance ->
series and study), so study and series keys, the path UIDs and the caller's
:class:`~app.dicom.query.StudyRestriction` all become conditions of one statement.

A page is one statement in a stable order (QIDO-18), ModalitiesInStudy included as a
correlated subquery (no N+1, no second round trip), plus, only when the page is full or empty
past an offset, a ``COUNT(*)`` for the total. Each plan is a :data:`Plan`: the
:class:`~app.index.search.binder.Binder` holding the statement's values and shape, and how to
construct the statement (run only when the statement cache has no statement of that shape).
"""

from collections.abc import Callable
from typing import Any, Final, cast

from sqlalchemy import ColumnElement, Select, func, literal, select, union_all

from app.dicom.attributes import Level
from app.dicom.query import Query, Resource, SortOrder, StudyRestriction
from app.index.models import Instance, Series, Study, index_prefix
from app.index.search.binder import Binder
from app.index.search.predicates import bind_conditions, tables_used

__all__ = ["Plan", "count_plan", "count_statement", "page_plan", "page_statement"]

#: a statement's values and shape, and how to construct it
Plan = tuple[Binder, Callable[[], Select[Any]]]

#: the alias of ``series`` for the ModalitiesInStudy column (built once: aliasing is costly)
_MODS: Any = Series.__table__.alias("mods")


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


#: the column each sort key orders by (text columns by their indexed prefix on PostgreSQL)
_SORT_COLUMNS: dict[str, Any] = {
    "StudyDate": Study.study_date,
    "PatientName": Study.patient_name_norm,
    "PatientID": Study.patient_id,
    "AccessionNumber": Study.accession_number,
    "StudyDescription": Study.study_description,
}


def _sorted(order: SortOrder, *, sqlite: bool) -> list[Any]:
    """ORDER BY of a study list sorted by ``order``: the key's column (with StudyTime after
    StudyDate), then the primary key, all in one direction so that one index walks them (a
    SQLite index holds the rowid after its column; PostgreSQL adds an incremental sort of the
    ties). Text columns are ordered by the prefix PostgreSQL indexes (revision 0009)."""
    column = _SORT_COLUMNS[order.key]
    keys = [column if sqlite or order.key == "StudyDate" else index_prefix(column)]
    if order.key == "StudyDate":
        keys.append(Study.study_time)
    keys.append(Study.id)
    return [k.desc() if order.descending else k.asc() for k in keys]


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


def page_plan(
    query: Query,
    *,
    limit: int,
    offset: int,
    sqlite: bool,
    restrict: StudyRestriction | None,
) -> Plan:
    """The values of a page statement, its shape, and how to construct it.

    An inner query finds the primary keys of the page, joining only the parent tables the
    conditions read and carrying only the sort keys; the outer query then reads the stored JSON
    and computes ModalitiesInStudy for those rows alone (never for rows skipped by the offset).
    """
    b = Binder(sqlite, "page", query.resource)
    where = bind_conditions(b, query, restrict)
    sort = query.order if query.resource is Resource.STUDIES else None
    if query.resource is Resource.PATIENTS:
        return b, _patient_page(b, where, limit=limit, offset=offset)
    if sort is not None:
        b.mark(("order", sort.key, sort.descending))
    elif query.resource is Resource.STUDIES:
        depth = b(offset + limit, "depth")
    size, skip = b(limit, "limit"), b(offset, "offset")

    def build() -> Select[Any]:
        level = query.level
        pk = {Level.STUDY: Study.id, Level.SERIES: Series.id, Level.INSTANCE: Instance.id}[level]
        order = _order(query.resource) if sort is None else _sorted(sort, sqlite=sqlite)
        conditions = [condition() for condition in where]
        if sort is None and query.resource is Resource.STUDIES:
            page = _study_page(conditions, limit=size.sql(), offset=skip.sql(), depth=depth.sql())
        else:
            ordered = {"study"} if sort else {c.table.name for c in _order_columns(order)}
            tables = tables_used(query, restrict) | ordered
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
    _, build = page_plan(query, limit=limit, offset=offset, sqlite=sqlite, restrict=restrict)
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


#: a patient is a PatientID within its issuer: studies are grouped by both (DESIGN.md §3:
#: patients are denormalised into their studies)
_PATIENT: Final = (Study.patient_id, Study.issuer_of_patient_id)


def _patients(where: list[ColumnElement[bool]]) -> Select[Any]:
    """One row per patient among the studies matching ``where``: the most recently indexed
    study (whose stored object gives the patient's attributes) and the patient's counts."""
    return cast(
        Select[Any],
        select(
            func.max(Study.id).label("pk"),
            func.count().label("pa_studies"),
            func.sum(Study.num_series).label("pa_series"),
            func.sum(Study.num_instances).label("pa_instances"),
            Study.patient_id.label("pa_id"),
            Study.issuer_of_patient_id.label("pa_issuer"),
        )
        .where(*where)
        .group_by(*_PATIENT),
    )


def _patient_page(
    b: Binder, where: list[Any], *, limit: int, offset: int
) -> Callable[[], Select[Any]]:
    """The statement of a page of patients (C-FIND PATIENT level), in PatientID order."""
    size, skip = b(limit, "limit"), b(offset, "offset")

    def build() -> Select[Any]:
        conditions = [condition() for condition in where]
        page = (
            _patients(conditions)
            .order_by(*_PATIENT)
            .limit(size.sql())
            .offset(skip.sql())
            .subquery("page")
        )
        return (
            select(
                Study.study_uid,
                Study.attrs_json.label("pa_json"),
                page.c.pa_studies,
                page.c.pa_series,
                page.c.pa_instances,
            )
            .select_from(Study)
            .join(page, page.c.pk == Study.id)
            .order_by(page.c.pa_id, page.c.pa_issuer)
        )

    return build


def _order_columns(order: list[Any]) -> list[Any]:
    """The table columns inside ORDER BY clauses (``desc()``/``nulls_last()`` unwrapped)."""
    out = []
    for clause in order:
        element = clause
        while hasattr(element, "element") and not hasattr(element, "table"):
            element = element.element
        out.append(element)
    return out


def count_plan(query: Query, *, sqlite: bool, restrict: StudyRestriction | None, cap: int) -> Plan:
    """The values of a count statement, its shape, and how to construct it."""
    b = Binder(sqlite, "count", query.resource, bool(cap))
    where = bind_conditions(b, query, restrict)
    upto = b(cap + 1, "cap") if cap else None

    def build() -> Select[Any]:
        conditions = [condition() for condition in where]
        if query.resource is Resource.PATIENTS:
            patients = _patients(conditions)
            if upto is not None:
                patients = patients.limit(upto.sql())
            return select(func.count()).select_from(patients.subquery("patients"))
        tables = tables_used(query, restrict)
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
    _, build = count_plan(query, sqlite=sqlite, restrict=restrict, cap=cap)
    return build()

"""Matching keys as SQL conditions (DESIGN.md §6): one builder per matcher kind.

Every value is a bound parameter (:mod:`~app.index.search.binder`). Wildcards become ``LIKE``
with ``%``, ``_`` and the escape character itself escaped (on SQLite, whose ``LIKE`` ignores
ASCII case, ``GLOB`` with bracketed metacharacters, so that matching stays case-sensitive,
QIDO-06). Person names match on the normalised ``*_norm`` columns. ModalitiesInStudy is an
``EXISTS`` over the study's series. Multi-valued columns (backslash-joined values, QIDO-13)
match when any one value matches. The path UIDs and the caller's
:class:`~app.dicom.query.StudyRestriction` are conditions like the others.
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, literal, or_, true

from app.dicom.query import (
    DateRange,
    DateTimeRange,
    FuzzyName,
    Matcher,
    Number,
    Query,
    Single,
    StudyRestriction,
    TimeRange,
    Universal,
    ValueList,
    Wildcard,
)
from app.dicom.text import normalize_pn
from app.index.models import PREFIX_INDEXED, Instance, Series, Study, index_prefix
from app.index.search.binder import Binder, Lazy

__all__ = [
    "COLUMNS",
    "ESCAPE",
    "bind_conditions",
    "conditions",
    "glob_pattern",
    "like_pattern",
    "literal_like",
    "tables_used",
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
#: the alias of ``series`` for the ModalitiesInStudy condition (built once: aliasing is costly)
_STUDY_SERIES: Any = Series.__table__.alias("study_series")
_MULTI_KEYS = frozenset(
    {
        "RequestAttributesSequence.ScheduledProcedureStepID",
        "RequestAttributesSequence.RequestedProcedureID",
    }
)


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


def _wildcard(b: Binder, column: Any, pattern: str, *, folded: bool = False) -> Lazy:
    if folded:  # SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE (trigram indexes serve it)
        pattern_param = b(like_pattern(pattern), "ilike")
        if b.sqlite:
            return lambda: column.like(pattern_param.sql(), escape=ESCAPE)
        return lambda: column.ilike(pattern_param.sql(), escape=ESCAPE)
    if b.sqlite:
        glob = b(glob_pattern(pattern), "glob")
        return lambda: column.op("GLOB")(glob.sql())
    like = b(like_pattern(pattern), "like")
    return lambda: column.like(like.sql(), escape=ESCAPE)


def _multi(b: Binder, column: Any, matcher: Matcher) -> Lazy | None:
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


def _fuzzy(b: Binder, column: Any, words: Sequence[str]) -> Lazy:
    """QIDO-14: each word the prefix of a component (``^``, ``=`` or space separated)."""
    prefixes = [b("%^" + literal_like(w) + "%", "like") for w in words]

    def every() -> ColumnElement[bool]:
        components = literal("^") + func.replace(func.replace(column, "=", "^"), " ", "^")
        return and_(true(), *(components.like(p.sql(), escape=ESCAPE) for p in prefixes))

    return every


def _range(b: Binder, column: Any, low: Any, high: Any) -> Lazy:
    bounds = [(b(low, "ge"), True)] if low is not None else []
    if high is not None:
        bounds.append((b(high, "le"), False))
    return lambda: and_(
        true(), *(column >= p.sql() if ge else column <= p.sql() for p, ge in bounds)
    )


def _date_time_range(b: Binder, column: Any, matcher: DateTimeRange) -> Lazy:
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


def _equal(b: Binder, column: Any, value: Any, *, prefixed: bool = False) -> Lazy:
    p = b(value, "eq")
    if prefixed and not b.sqlite:
        return lambda: and_(index_prefix(column) == index_prefix(p.sql()), column == p.sql())
    return lambda: column == p.sql()


def _among(b: Binder, column: Any, values: Sequence[str], *, prefixed: bool = False) -> Lazy:
    items = [b(v, "in") for v in values]
    if prefixed and not b.sqlite:
        return lambda: and_(
            index_prefix(column).in_([index_prefix(p.sql()) for p in items]),
            column.in_([p.sql() for p in items]),
        )
    return lambda: column.in_([p.sql() for p in items])


def _condition(b: Binder, key: str, matcher: Matcher) -> Lazy | None:
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
        if pn:
            return _wildcard(b, column, normalize_pn(matcher.pattern))
        return _wildcard(b, column, matcher.pattern, folded=matcher.folded)
    if isinstance(matcher, FuzzyName):
        return _fuzzy(b, column, matcher.words)
    if isinstance(matcher, ValueList):
        return _among(b, column, matcher.values, prefixed=prefixed)
    if isinstance(matcher, DateRange | TimeRange):
        return _range(b, column, matcher.low, matcher.high)
    if isinstance(matcher, DateTimeRange):
        return _date_time_range(b, column, matcher)
    raise TypeError(f"unknown matcher {matcher!r}")


def _modalities_condition(b: Binder, matcher: Matcher) -> Lazy | None:
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


def _restriction(b: Binder, restrict: StudyRestriction | None) -> list[Lazy]:
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


def bind_conditions(b: Binder, query: Query, restrict: StudyRestriction | None) -> list[Lazy]:
    """Every condition of ``query``: match keys, path UIDs and the restriction, their values
    handed to ``b`` (constructed only when called)."""
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
    return [build() for build in bind_conditions(Binder(sqlite), query, restrict)]


def tables_used(query: Query, restrict: StudyRestriction | None) -> set[str]:
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

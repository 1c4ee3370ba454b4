"""A :class:`~app.dicom.query.Query` compiled to SQL over the index (DESIGN.md §6).

Every value is a bound parameter. Wildcards become ``LIKE`` with ``%``, ``_`` and the escape
character itself escaped (on SQLite, whose ``LIKE`` ignores ASCII case, ``GLOB`` with bracketed
metacharacters, so that matching stays case-sensitive, QIDO-06). Person names match on the
normalised ``*_norm`` columns. ModalitiesInStudy is an ``EXISTS`` over the study's series.

A page is two statements plus one: the count, the page itself in a stable order (StudyDate
descending with NULLs last, then the primary key, QIDO-18), and the distinct series modalities of
the studies on the page in one grouped query (no N+1).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from app.dicom.query import (
    DateRange,
    Matcher,
    Query,
    Single,
    StudyRestriction,
    Universal,
    ValueList,
    Wildcard,
)
from app.dicom.text import normalize_pn
from app.index.models import Series, Study

__all__ = ["StudyHit", "glob_pattern", "like_pattern", "restriction_conditions", "search_studies"]

ESCAPE = "\\"

_STUDY_COLUMNS: dict[str, Any] = {
    "StudyInstanceUID": Study.study_uid,
    "PatientID": Study.patient_id,
    "PatientName": Study.patient_name_norm,
    "PatientBirthDate": Study.patient_birth_date,
    "PatientSex": Study.patient_sex,
    "AccessionNumber": Study.accession_number,
    "StudyID": Study.study_id,
    "ReferringPhysicianName": Study.referring_physician_name_norm,
    "StudyDescription": Study.study_description,
    "StudyDate": Study.study_date,
}
_PN_KEYS = frozenset({"PatientName", "ReferringPhysicianName"})


@dataclass(frozen=True, slots=True)
class StudyHit:
    """One matching study with what the response needs besides its stored JSON."""

    id: int
    study_uid: str
    num_series: int
    num_instances: int
    attrs_json: bytes
    modalities: tuple[str, ...]


def like_pattern(pattern: str) -> str:
    """A DICOM wildcard pattern as a ``LIKE`` pattern with ``\\`` as the escape character.

    >>> like_pattern("*MUL?ER*")
    '%MUL_ER%'
    >>> like_pattern("50%_a\\\\b*")
    '50\\\\%\\\\_a\\\\\\\\b%'
    """
    out = []
    for c in pattern:
        if c in ("%", "_", ESCAPE):
            out.append(ESCAPE + c)
        elif c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        else:
            out.append(c)
    return "".join(out)


def glob_pattern(pattern: str) -> str:
    """A DICOM wildcard pattern as an SQLite ``GLOB`` pattern (case-sensitive).

    >>> glob_pattern("*A[1]?*")
    '*A[[]1]?*'
    """
    return "".join("[[]" if c == "[" else c for c in pattern)


def _condition(
    column: Any, matcher: Matcher, *, pn: bool, sqlite: bool
) -> ColumnElement[bool] | None:
    if isinstance(matcher, Universal):
        return None
    if isinstance(matcher, Single):
        equal: ColumnElement[bool] = column == (
            normalize_pn(matcher.value) if pn else matcher.value
        )
        return equal
    if isinstance(matcher, Wildcard):
        pattern = normalize_pn(matcher.pattern) if pn else matcher.pattern
        if sqlite:
            glob: ColumnElement[bool] = column.op("GLOB")(glob_pattern(pattern))
            return glob
        like: ColumnElement[bool] = column.like(like_pattern(pattern), escape=ESCAPE)
        return like
    if isinstance(matcher, ValueList):
        among: ColumnElement[bool] = column.in_(matcher.values)
        return among
    if isinstance(matcher, DateRange):
        parts = []
        if matcher.low is not None:
            parts.append(column >= matcher.low)
        if matcher.high is not None:
            parts.append(column <= matcher.high)
        return and_(true(), *parts)
    raise TypeError(f"unknown matcher {matcher!r}")


def _study_conditions(query: Query, *, sqlite: bool) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for keyword, matcher in query.filters.items():
        if keyword == "ModalitiesInStudy":
            if isinstance(matcher, ValueList):
                conditions.append(
                    exists()
                    .where(Series.study_id == Study.id, Series.modality.in_(matcher.values))
                    .correlate(Study)
                )
            continue
        condition = _condition(
            _STUDY_COLUMNS[keyword], matcher, pn=keyword in _PN_KEYS, sqlite=sqlite
        )
        if condition is not None:
            conditions.append(condition)
    return conditions


def restriction_conditions(restrict: StudyRestriction | None) -> list[ColumnElement[bool]]:
    """A scoped grant as conditions on ``Study`` (every search level joins to its study)."""
    conditions: list[ColumnElement[bool]] = []
    if restrict is not None and restrict.study_uids is not None:
        conditions.append(Study.study_uid.in_(sorted(restrict.study_uids)))
    if restrict is not None and restrict.patient_ids is not None:
        conditions.append(Study.patient_id.in_(sorted(restrict.patient_ids)))
    return conditions


async def search_studies(
    conn: AsyncConnection,
    query: Query,
    *,
    limit: int,
    offset: int,
    restrict: StudyRestriction | None = None,
) -> tuple[list[StudyHit], int]:
    """The page ``[offset, offset + limit)`` of the studies matching ``query``, and the total."""
    conditions = _study_conditions(query, sqlite=conn.dialect.name == "sqlite")
    conditions += restriction_conditions(restrict)
    total = (
        await conn.execute(select(func.count()).select_from(Study).where(*conditions))
    ).scalar_one()
    if total <= offset or limit == 0:
        return [], total
    rows = (
        await conn.execute(
            select(
                Study.id, Study.study_uid, Study.num_series, Study.num_instances, Study.attrs_json
            )
            .where(*conditions)
            .order_by(Study.study_date.desc().nulls_last(), Study.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    modalities = await _modalities(conn, [r.id for r in rows])
    hits = [
        StudyHit(
            r.id,
            r.study_uid,
            r.num_series,
            r.num_instances,
            r.attrs_json,
            tuple(sorted(modalities.get(r.id, ()))),
        )
        for r in rows
    ]
    return hits, total


async def _modalities(conn: AsyncConnection, study_ids: Sequence[int]) -> dict[int, set[str]]:
    if not study_ids:
        return {}
    result = await conn.execute(
        select(Series.study_id, Series.modality)
        .where(Series.study_id.in_(study_ids), Series.modality.is_not(None))
        .group_by(Series.study_id, Series.modality)
    )
    found: dict[int, set[str]] = {}
    for study_id, modality in result:
        if modality is not None:
            found.setdefault(study_id, set()).add(modality)
    return found

"""The studies retention rules select (``lightbox retention``, issue 23 point 6): SQL only; the
deleting is the delete service's (``app.services.retention``).

A rule is a conjunction of criteria (:class:`Criteria`), rules are alternatives: a study is
selected when any rule matches it. Its age is counted from its StudyDate, else (no date) from
the day it was received. The modality criterion asks for a series of that modality in the study
(ModalitiesInStudy); the description one is a DICOM wildcard pattern (``*``, ``?``) matched
without regard to case.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, exists, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import Instance, Series, Study
from app.index.search.predicates import ESCAPE, like_pattern

__all__ = ["Criteria", "Selection", "count_studies", "select_page", "selection"]


@dataclass(frozen=True, slots=True)
class Criteria:
    """One rule: studies dated before ``before``, with a series of ``modality``, whose
    description matches ``description`` (None: any)."""

    before: date
    modality: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    """What the rules select: studies, their instances and bytes, and the highest study row id
    (a run deletes no study stored after it counted)."""

    studies: int
    instances: int
    bytes: int
    last_id: int


def _received_day(conn: AsyncConnection) -> Any:
    if conn.dialect.name == "postgresql":
        return func.date(func.timezone("UTC", Study.created_at))
    return func.date(Study.created_at)


def _matches(conn: AsyncConnection, criteria: Sequence[Criteria]) -> ColumnElement[bool]:
    day = func.coalesce(Study.study_date, _received_day(conn))
    alternatives = []
    for rule in criteria:
        parts: list[ColumnElement[bool]] = [day < rule.before]
        if rule.modality is not None:
            parts.append(
                exists().where(Series.study_id == Study.id, Series.modality == rule.modality)
            )
        if rule.description is not None:
            pattern = like_pattern(rule.description.lower())
            parts.append(func.lower(Study.study_description).like(pattern, escape=ESCAPE))
        alternatives.append(parts[0] if len(parts) == 1 else parts[0] & _all(parts[1:]))
    return or_(*alternatives) if alternatives else false()


def _all(parts: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    combined = parts[0]
    for part in parts[1:]:
        combined = combined & part
    return combined


async def count_studies(conn: AsyncConnection) -> int:
    """Every study in the index."""
    return int((await conn.execute(select(func.count()).select_from(Study))).scalar_one())


async def selection(conn: AsyncConnection, criteria: Sequence[Criteria]) -> Selection:
    """What ``criteria`` select, counted (two aggregate queries)."""
    where = _matches(conn, criteria)
    studies, instances, last_id = (
        await conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(Study.num_instances), 0),
                func.coalesce(func.max(Study.id), 0),
            ).where(where)
        )
    ).one()
    size = (
        await conn.execute(
            select(func.coalesce(func.sum(Instance.size), 0)).where(
                Instance.study_id.in_(select(Study.id).where(where))
            )
        )
    ).scalar_one()
    return Selection(int(studies), int(instances), int(size), int(last_id))


async def select_page(
    conn: AsyncConnection,
    criteria: Sequence[Criteria],
    *,
    after_id: int,
    last_id: int,
    limit: int,
) -> list[tuple[int, str]]:
    """The next ``limit`` selected studies (row id, StudyInstanceUID) with ids in
    ``(after_id, last_id]``, in id order."""
    rows = await conn.execute(
        select(Study.id, Study.study_uid)
        .where(_matches(conn, criteria), Study.id > after_id, Study.id <= last_id)
        .order_by(Study.id)
        .limit(limit)
    )
    return [(int(r[0]), str(r[1])) for r in rows]

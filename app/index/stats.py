"""Usage figures of the archive (``lightbox stats``, ``GET /api/stats``): aggregate queries only.

Each figure is one ``GROUP BY`` over the instance table (its size column is the only record of
bytes), the database doing the counting: no row comes back to Python but one per group. The
per-modality figures first sum instances per series, then join the (far fewer) series rows; the
largest studies are ranked inside the database and only the top ones read. On PostgreSQL at
100,000 studies and a million instances each query is one sequential scan of the instance
table (a few hundred milliseconds; nothing is locked: plain reads).

Months are those the instances were received in (``created_at``, UTC), the archive's growth;
the study's own date is a QIDO-RS search away.
"""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import desc, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import Instance, Series, Study

__all__ = [
    "Bucket",
    "LargeStudy",
    "Totals",
    "by_modality",
    "by_month",
    "largest_studies",
    "prepare",
    "received_since",
    "totals",
]

#: PostgreSQL's memory per hash aggregate for these reports (default 4 MB): a group per series
#: of a large archive then stays in memory instead of spilling to temporary files
_WORK_MEM = "64MB"


@dataclass(frozen=True, slots=True)
class Totals:
    studies: int
    series: int
    instances: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Bucket:
    """The figures of one group (a modality, a month)."""

    key: str
    studies: int
    series: int
    instances: int
    bytes: int


@dataclass(frozen=True, slots=True)
class LargeStudy:
    study_uid: str
    study_date: date | None
    modalities: tuple[str, ...]
    series: int
    instances: int
    bytes: int


async def prepare(conn: AsyncConnection) -> None:
    """Give the report's transaction room for its aggregates (PostgreSQL: ``SET LOCAL``, for
    this transaction only)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text(f"SET LOCAL work_mem = '{_WORK_MEM}'"))


async def totals(conn: AsyncConnection) -> Totals:
    """Studies, series, instances and their bytes."""
    studies = select(func.count()).select_from(Study).scalar_subquery()
    series = select(func.count()).select_from(Series).scalar_subquery()
    row = (
        await conn.execute(
            select(studies, series, func.count(), func.coalesce(func.sum(Instance.size), 0))
        )
    ).one()
    return Totals(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


async def by_modality(conn: AsyncConnection) -> list[Bucket]:
    """Per modality (a series' Modality; ``""`` when it has none): studies holding such a
    series, the series, their instances and bytes; the largest first.

    Grouped in steps, each a hash aggregate (no ``COUNT(DISTINCT ...)``, which sorts): the
    instances per series, then per (modality, study), then per modality.
    """
    per_series = (
        select(
            Instance.series_id,
            func.count().label("instances"),
            func.sum(Instance.size).label("bytes"),
        )
        .group_by(Instance.series_id)
        .subquery()
    )
    per_study = (
        select(
            Series.modality.label("modality"),
            func.count().label("series"),
            func.sum(per_series.c.instances).label("instances"),
            func.sum(per_series.c.bytes).label("bytes"),
        )
        .join(per_series, per_series.c.series_id == Series.id)
        .group_by(Series.modality, Series.study_id)
        .subquery()
    )
    total_bytes = func.sum(per_study.c.bytes)
    rows = await conn.execute(
        select(
            per_study.c.modality,  # NULLs group together
            func.count(),
            func.sum(per_study.c.series),
            func.sum(per_study.c.instances),
            total_bytes,
        )
        .group_by(per_study.c.modality)
        .order_by(desc(total_bytes), per_study.c.modality)
    )
    return [Bucket(r[0] or "", int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


def _month(conn: AsyncConnection, column: Any) -> Any:
    """The first moment of a timestamp's month, in UTC (text ``YYYY-MM-...`` on SQLite)."""
    if conn.dialect.name == "postgresql":
        return func.date_trunc("month", func.timezone("UTC", column))
    return func.strftime("%Y-%m", column)  # SQLite keeps UTC text


async def by_month(conn: AsyncConnection) -> list[Bucket]:
    """Per month received: the studies and series that received instances, the instances and
    their bytes; oldest first (grouped per series of the month first: hash aggregates only)."""
    month = _month(conn, Instance.created_at)
    per_series = (
        select(
            month.label("month"),
            Instance.study_id,
            func.count().label("instances"),
            func.sum(Instance.size).label("bytes"),
        )
        .group_by(month, Instance.study_id, Instance.series_id)
        .subquery()
    )
    per_study = (
        select(
            per_series.c.month,
            func.count().label("series"),
            func.sum(per_series.c.instances).label("instances"),
            func.sum(per_series.c.bytes).label("bytes"),
        )
        .group_by(per_series.c.month, per_series.c.study_id)
        .subquery()
    )
    rows = await conn.execute(
        select(
            per_study.c.month,
            func.count(),
            func.sum(per_study.c.series),
            func.sum(per_study.c.instances),
            func.sum(per_study.c.bytes),
        )
        .group_by(per_study.c.month)
        .order_by(per_study.c.month)
    )
    return [Bucket(_month_key(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


def _month_key(value: Any) -> str:
    """``YYYY-MM`` of what :func:`_month` gave."""
    return value.strftime("%Y-%m") if isinstance(value, datetime) else str(value)[:7]


async def received_since(conn: AsyncConnection, since: datetime) -> tuple[int, int]:
    """Instances received since ``since`` (UTC) and their bytes."""
    if conn.dialect.name == "sqlite":  # stored as naive UTC text
        since = since.replace(tzinfo=None)
    row = (
        await conn.execute(
            select(func.count(), func.coalesce(func.sum(Instance.size), 0)).where(
                Instance.created_at >= since
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def largest_studies(conn: AsyncConnection, limit: int) -> list[LargeStudy]:
    """The ``limit`` studies holding the most bytes, the largest first."""
    ranked = (
        select(
            Instance.study_id,
            func.count().label("instances"),
            func.sum(Instance.size).label("bytes"),
        )
        .group_by(Instance.study_id)
        .order_by(desc(func.sum(Instance.size)), Instance.study_id)
        .limit(limit)
        .subquery()
    )
    rows = (
        await conn.execute(
            select(
                Study.id,
                Study.study_uid,
                Study.study_date,
                Study.num_series,
                ranked.c.instances,
                ranked.c.bytes,
            )
            .join(ranked, ranked.c.study_id == Study.id)
            .order_by(desc(ranked.c.bytes), Study.id)
        )
    ).all()
    modalities: dict[int, set[str]] = {}
    if rows:
        found = await conn.execute(
            select(Series.study_id, Series.modality)
            .where(Series.study_id.in_([r[0] for r in rows]), Series.modality.is_not(None))
            .distinct()
        )
        for study_id, modality in found:
            modalities.setdefault(study_id, set()).add(str(modality))
    return [
        LargeStudy(
            study_uid=r[1],
            study_date=r[2],
            modalities=tuple(sorted(modalities.get(r[0], ()))),
            series=int(r[3]),
            instances=int(r[4]),
            bytes=int(r[5]),
        )
        for r in rows
    ]

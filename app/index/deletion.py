"""Index side of DELETE (DEL-01..04): remove rows, fix the derived counts, keep tombstones.

Everything here runs inside the caller's transaction (the repository never commits). The target
study's row is locked first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite serialises writers
anyway), which orders a delete against a concurrent ingest into the same study: an ingest that
already inserted rows under the study holds a key-share lock on it, so the delete waits for its
commit and then sees (and deletes) those rows too; an ingest that comes later waits for the delete
and, when its study or series row is gone, fails its foreign-key check and retries from scratch.
Counts move by deltas (``n = n - k``), as ingest moves them by ``n = n + k``, so neither side
overwrites the other's change. ModalitiesInStudy is computed from the remaining series at query
time, so removing a series is enough to update it.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.dicom.target import Target
from app.index.models import Instance, Series, Study, Tombstone

__all__ = [
    "DeletedRows",
    "Level",
    "clear_tombstones",
    "delete_target",
    "live_tombstone",
    "referenced_blobs",
]

_CHUNK = 500


class Level(StrEnum):
    """The level of a deleted resource, as stored in ``tombstone.level``."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


@dataclass(slots=True)
class DeletedRows:
    """What one delete removed from the index."""

    instances: int = 0
    series: list[str] = field(default_factory=list)  # Series Instance UIDs removed entirely
    study_removed: bool = False
    blob_keys: list[str] = field(default_factory=list)
    sop_uids: list[str] = field(default_factory=list)
    patient_id: str | None = None  # the study's, read before its rows went (DEL-03's audit)


def _insert(conn: AsyncConnection, table: Any) -> postgresql.Insert | sqlite.Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def delete_target(
    conn: AsyncConnection,
    target: Target,
    *,
    now: datetime,
    tombstone_until: datetime | None,
) -> DeletedRows | None:
    """Delete a study, series or instance; None when it does not exist (under that parent)."""
    study_uid, series_uid, sop_uid = target.study_uid, target.series_uid, target.sop_uid
    study = (
        await conn.execute(
            select(Study.id, Study.patient_id).where(Study.study_uid == study_uid).with_for_update()
        )
    ).first()
    if study is None:
        return None
    study_id: int = study.id

    series_ids: dict[int, str] = {}
    if series_uid is not None:
        row = (
            await conn.execute(
                select(Series.id).where(
                    Series.series_uid == series_uid, Series.study_id == study_id
                )
            )
        ).first()
        if row is None:
            return None
        series_ids[row.id] = series_uid

    stmt = (
        select(Instance.id, Instance.sop_uid, Instance.blob_key, Instance.series_id)
        .where(Instance.study_id == study_id)
        .order_by(Instance.id)
    )
    if series_ids:
        stmt = stmt.where(Instance.series_id.in_(list(series_ids)))
    if sop_uid is not None:
        stmt = stmt.where(Instance.sop_uid == sop_uid)
    rows = (await conn.execute(stmt)).all()
    if sop_uid is not None and not rows:
        return None

    result = DeletedRows(
        instances=len(rows),
        blob_keys=[r.blob_key for r in rows],
        sop_uids=[r.sop_uid for r in rows],
        patient_id=study.patient_id,
    )
    removed_per_series: dict[int, int] = {}
    for r in rows:
        removed_per_series[r.series_id] = removed_per_series.get(r.series_id, 0) + 1
    ids = [r.id for r in rows]
    for start in range(0, len(ids), _CHUNK):
        await conn.execute(delete(Instance).where(Instance.id.in_(ids[start : start + _CHUNK])))

    if series_uid is None and sop_uid is None:
        # the whole study: every series goes, whether or not it still had instances
        all_series = (
            await conn.execute(
                select(Series.id, Series.series_uid).where(Series.study_id == study_id)
            )
        ).all()
        series_ids = {r.id: r.series_uid for r in all_series}
        gone_series = list(series_ids)
    elif sop_uid is None:
        gone_series = list(series_ids)
    else:
        # one instance: its series goes only when nothing is left in it
        (series_id,) = removed_per_series
        left = (
            await conn.execute(
                select(func.count()).select_from(Instance).where(Instance.series_id == series_id)
            )
        ).scalar_one()
        gone_series = [] if left else [series_id]

    if gone_series:
        await conn.execute(delete(Series).where(Series.id.in_(sorted(gone_series))))
    for series_id, removed in removed_per_series.items():
        if series_id not in gone_series:
            await conn.execute(
                update(Series)
                .where(Series.id == series_id)
                .values(num_instances=Series.num_instances - removed)
            )
    result.series = [series_ids[s] for s in gone_series]

    series_left = (
        await conn.execute(
            select(func.count()).select_from(Series).where(Series.study_id == study_id)
        )
    ).scalar_one()
    if series_left == 0:
        await conn.execute(delete(Study).where(Study.id == study_id))
        result.study_removed = True
    else:
        await conn.execute(
            update(Study)
            .where(Study.id == study_id)
            .values(
                num_series=Study.num_series - len(gone_series),
                num_instances=Study.num_instances - len(rows),
                updated_at=now,
            )
        )

    await conn.execute(delete(Tombstone).where(Tombstone.expires_at <= now))
    if tombstone_until is not None:
        # series_ids names the series of every deleted row: the target series, or all of the
        # study's series for a study delete (an instance path always names its series)
        stones: list[dict[str, Any]] = [
            _stone(
                Level.INSTANCE, r.sop_uid, study_uid, series_ids[r.series_id], now, tombstone_until
            )
            for r in rows
        ]
        stones += [
            _stone(Level.SERIES, uid, study_uid, None, now, tombstone_until)
            for uid in result.series
        ]
        if result.study_removed:
            stones.append(_stone(Level.STUDY, study_uid, study_uid, None, now, tombstone_until))
        await _put_tombstones(conn, stones)
    return result


def _stone(
    level: Level,
    uid: str,
    study_uid: str,
    series_uid: str | None,
    now: datetime,
    until: datetime,
) -> dict[str, Any]:
    return {
        "level": level.value,
        "uid": uid,
        "study_uid": study_uid,
        "series_uid": series_uid,
        "deleted_at": now,
        "expires_at": until,
    }


async def _put_tombstones(conn: AsyncConnection, stones: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(stones), _CHUNK):
        stmt = _insert(conn, Tombstone)
        stmt = stmt.on_conflict_do_update(
            index_elements=["uid"],
            set_={
                "level": stmt.excluded.level,
                "study_uid": stmt.excluded.study_uid,
                "series_uid": stmt.excluded.series_uid,
                "deleted_at": stmt.excluded.deleted_at,
                "expires_at": stmt.excluded.expires_at,
            },
        )
        await conn.execute(stmt, list(stones[start : start + _CHUNK]))


async def referenced_blobs(conn: AsyncConnection, keys: Sequence[str]) -> set[str]:
    """The keys among ``keys`` that an index row references (again)."""
    found: set[str] = set()
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        found.update(
            r[0]
            for r in await conn.execute(
                select(Instance.blob_key).where(Instance.blob_key.in_(chunk))
            )
        )
    return found


async def clear_tombstones(conn: AsyncConnection, uids: Iterable[str]) -> None:
    """Forget the tombstones of UIDs stored again (ingest calls this in its transaction)."""
    wanted = sorted(set(uids))
    for start in range(0, len(wanted), _CHUNK):
        await conn.execute(_CLEAR_TOMBSTONES, {"uids": wanted[start : start + _CHUNK]})


#: built once (ingest runs it in every transaction that stores)
_CLEAR_TOMBSTONES: Final = delete(Tombstone).where(
    Tombstone.uid.in_(bindparam("uids", expanding=True))
)


async def live_tombstone(conn: AsyncConnection, target: Target, *, now: datetime) -> bool:
    """Whether the target (frames: their instance) has an unexpired tombstone under its
    parents."""
    study_uid, series_uid, sop_uid = target.study_uid, target.series_uid, target.sop_uid
    if sop_uid is not None:
        where = and_(
            Tombstone.uid == sop_uid,
            Tombstone.level == Level.INSTANCE.value,
            Tombstone.study_uid == study_uid,
        )
        if series_uid is not None:
            where = and_(where, Tombstone.series_uid == series_uid)
    elif series_uid is not None:
        where = and_(
            Tombstone.uid == series_uid,
            Tombstone.level == Level.SERIES.value,
            Tombstone.study_uid == study_uid,
        )
    else:
        where = and_(Tombstone.uid == study_uid, Tombstone.level == Level.STUDY.value)
    row = await conn.execute(select(Tombstone.id).where(where, Tombstone.expires_at > now).limit(1))
    return row.first() is not None

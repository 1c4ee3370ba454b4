"""SQL of jobs (``job``) and their units of work (``job_item``).

A job row is written by whoever creates it, then by the one process holding its lease (the
*runner*): :func:`claim` takes the lease when it is free, ran out, or its holder is known dead;
:func:`heartbeat` renews it, writes the progress and reads a cancel asked meanwhile;
:func:`release` ends it with the job's state. Each of these checks the runner in its WHERE
clause, so a process that lost its lease (it stalled past it, another took over) cannot write
over the new runner's progress. Nothing here commits: the services own their transactions.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import Job, JobItem
from app.index.timestamps import as_utc

__all__ = [
    "ItemRow",
    "JobRow",
    "Progress",
    "add_items",
    "claim",
    "create",
    "get",
    "heartbeat",
    "items",
    "latest",
    "page",
    "release",
    "request_cancel",
    "set_item",
    "set_state",
]


@dataclass(slots=True)
class Progress:
    """A job's counters: units (studies or series) and instances."""

    units_total: int = 0
    units_done: int = 0
    units_skipped: int = 0
    units_failed: int = 0
    instances_total: int = 0
    instances_stored: int = 0
    instances_held: int = 0
    instances_failed: int = 0
    bytes_stored: int = 0

    def values(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job as stored."""

    id: str
    kind: str
    fingerprint: str
    parameters: dict[str, Any]
    state: str
    reason: str | None
    owner: str | None
    runner: str | None
    lease_until: datetime | None
    cancel_requested: bool
    progress: Progress
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class ItemRow:
    """One unit of a job's work."""

    key: str
    study_uid: str
    series_uid: str | None
    patient_id: str | None
    state: str
    expected: int | None = None
    stored: int = 0
    held: int = 0
    failed: int = 0
    bytes: int = 0
    error: str | None = None


_PROGRESS = tuple(f.name for f in fields(Progress))


def _job(row: Any) -> JobRow:
    values = dict(row._mapping)
    progress = Progress(**{name: values.pop(name) for name in _PROGRESS})
    for name in ("lease_until", "created_at", "updated_at", "started_at", "finished_at"):
        if values[name] is not None:
            values[name] = as_utc(values[name])
    return JobRow(progress=progress, **values)


_JOB_COLUMNS = tuple(c for c in Job.__table__.columns)


async def create(conn: AsyncConnection, job: JobRow) -> None:
    """Insert a new job."""
    values = {
        name: getattr(job, name)
        for name in (
            "id",
            "kind",
            "fingerprint",
            "parameters",
            "state",
            "reason",
            "owner",
            "runner",
            "lease_until",
            "cancel_requested",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        )
    }
    await conn.execute(insert(Job).values(**values, **job.progress.values()))


async def get(conn: AsyncConnection, job_id: str) -> JobRow | None:
    row = (await conn.execute(select(*_JOB_COLUMNS).where(Job.id == job_id))).first()
    return _job(row) if row is not None else None


async def latest(conn: AsyncConnection, fingerprint: str) -> JobRow | None:
    """The newest job made for the same request (kind and parameters)."""
    query = (
        select(*_JOB_COLUMNS)
        .where(Job.fingerprint == fingerprint)
        .order_by(Job.created_at.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()
    return _job(row) if row is not None else None


async def page(conn: AsyncConnection, *, limit: int, offset: int) -> tuple[list[JobRow], int]:
    """Jobs, newest first, and how many there are."""
    total = (await conn.execute(select(func.count()).select_from(Job))).scalar_one()
    rows = await conn.execute(
        select(*_JOB_COLUMNS).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
    )
    return [_job(row) for row in rows], int(total)


async def claim(
    conn: AsyncConnection,
    job_id: str,
    runner: str,
    *,
    now: datetime,
    until: datetime,
    dead: str | None = None,
) -> bool:
    """Take the job's lease for ``runner`` if nobody holds it, its lease ran out, or its holder
    is ``dead`` (known to have stopped); the job becomes running, a cancel asked before is
    forgotten. False when another runner holds it."""
    free = or_(Job.runner.is_(None), Job.lease_until.is_(None), Job.lease_until < now)
    if dead is not None:
        free = or_(free, Job.runner == dead)
    result = await conn.execute(
        update(Job)
        .where(and_(Job.id == job_id, free))
        .values(
            runner=runner,
            lease_until=until,
            state="running",
            reason=None,
            cancel_requested=False,
            started_at=func.coalesce(Job.started_at, now),
            finished_at=None,
            updated_at=now,
        )
    )
    return bool(result.rowcount)


async def heartbeat(
    conn: AsyncConnection,
    job_id: str,
    runner: str,
    *,
    now: datetime,
    until: datetime,
    progress: Progress,
) -> bool | None:
    """Renew ``runner``'s lease and write the progress; whether a cancel was asked, or None
    when ``runner`` does not hold the lease any more."""
    result = await conn.execute(
        update(Job)
        .where(and_(Job.id == job_id, Job.runner == runner))
        .values(lease_until=until, updated_at=now, **progress.values())
        .returning(Job.cancel_requested)
    )
    row = result.first()
    return bool(row[0]) if row is not None else None


def _ended(state: str, reason: str | None, now: datetime) -> dict[str, Any]:
    """The columns of a job that has ended in ``state``: no runner, lease or cancel request."""
    return {
        "state": state,
        "reason": reason,
        "runner": None,
        "lease_until": None,
        "cancel_requested": False,
        "updated_at": now,
        "finished_at": now,
    }


async def release(
    conn: AsyncConnection,
    job_id: str,
    runner: str,
    *,
    state: str,
    reason: str | None,
    now: datetime,
    progress: Progress,
) -> bool:
    """End ``runner``'s lease with the job's state; False if it did not hold it any more."""
    result = await conn.execute(
        update(Job)
        .where(and_(Job.id == job_id, Job.runner == runner))
        .values(**_ended(state, reason, now), **progress.values())
    )
    return bool(result.rowcount)


async def request_cancel(conn: AsyncConnection, job_id: str, *, now: datetime) -> bool:
    """Ask the job's runner to stop (it reads the flag with its next heartbeat)."""
    result = await conn.execute(
        update(Job)
        .where(and_(Job.id == job_id, Job.runner.is_not(None)))
        .values(cancel_requested=True, updated_at=now)
    )
    return bool(result.rowcount)


async def set_state(
    conn: AsyncConnection,
    job_id: str,
    *,
    state: str,
    reason: str | None,
    now: datetime,
    unless_leased_after: datetime | None = None,
) -> bool:
    """Set the state of a job nobody runs (a cancel of an interrupted job): with
    ``unless_leased_after``, only if no runner holds a lease beyond that time."""
    condition = Job.id == job_id
    if unless_leased_after is not None:
        condition = and_(
            condition,
            or_(
                Job.runner.is_(None),
                Job.lease_until.is_(None),
                Job.lease_until < unless_leased_after,
            ),
        )
    result = await conn.execute(update(Job).where(condition).values(**_ended(state, reason, now)))
    return bool(result.rowcount)


def _insert(conn: AsyncConnection) -> postgresql.Insert | sqlite.Insert:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(JobItem)


async def add_items(
    conn: AsyncConnection, job_id: str, new: Iterable[ItemRow], *, now: datetime
) -> None:
    """Add units to a job; those it has already (by key) keep their state."""
    values = [
        {
            "job_id": job_id,
            "key": item.key,
            "study_uid": item.study_uid,
            "series_uid": item.series_uid,
            "patient_id": item.patient_id,
            "state": item.state,
            "expected": item.expected,
            "stored": item.stored,
            "held": item.held,
            "failed": item.failed,
            "bytes": item.bytes,
            "error": item.error,
            "updated_at": now,
        }
        for item in new
    ]
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        await conn.execute(
            _insert(conn).values(chunk).on_conflict_do_nothing(index_elements=["job_id", "key"])
        )


_ITEM_COLUMNS = (
    JobItem.key,
    JobItem.study_uid,
    JobItem.series_uid,
    JobItem.patient_id,
    JobItem.state,
    JobItem.expected,
    JobItem.stored,
    JobItem.held,
    JobItem.failed,
    JobItem.bytes,
    JobItem.error,
)


async def items(
    conn: AsyncConnection,
    job_id: str,
    *,
    states: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[ItemRow]:
    """A job's units (in ``states``), in the order they were added."""
    query = select(*_ITEM_COLUMNS).where(JobItem.job_id == job_id)
    if states is not None:
        query = query.where(JobItem.state.in_(states))
    query = query.order_by(JobItem.id)
    if limit is not None:
        query = query.limit(limit)
    return [ItemRow(*row) for row in await conn.execute(query)]


async def set_item(conn: AsyncConnection, job_id: str, item: ItemRow, *, now: datetime) -> None:
    """Record a unit's outcome."""
    await conn.execute(
        update(JobItem)
        .where(and_(JobItem.job_id == job_id, JobItem.key == item.key))
        .values(
            state=item.state,
            patient_id=item.patient_id,
            expected=item.expected,
            stored=item.stored,
            held=item.held,
            failed=item.failed,
            bytes=item.bytes,
            error=item.error,
            updated_at=now,
        )
    )

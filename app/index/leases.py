"""Leases: which process runs a scheduled job now (``app.services.housekeeping``).

A lease row per job names its holder and until when it is held. :func:`claim` takes it only
when it has expired, in one ``UPDATE ... WHERE expires_at <= now``: of several processes (the
workers of a server, the replicas of a deployment) trying at once, the database lets exactly
one update the row (PostgreSQL re-checks the condition on the row the first one committed;
SQLite serialises writers), so exactly one runs the job. The holder then keeps it while the job
runs (:func:`extend`) and, at the end, sets when the next run is due (:func:`finish`).

Times are the processes' clocks (UTC): replicas are expected to keep theirs in step (NTP); a
skew only moves a run by that much.
"""

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import Lease

__all__ = ["claim", "due", "extend", "finish", "leases"]

#: a new lease has expired already: any process may claim it at once
_EXPIRED: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _insert(conn: AsyncConnection) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(Lease)
    return sqlite.insert(Lease)


async def due(conn: AsyncConnection, name: str, now: datetime) -> bool:
    """Whether the lease ``name`` is free at ``now`` (a read: no lock is taken)."""
    expires = (
        await conn.execute(select(Lease.expires_at).where(Lease.name == name))
    ).scalar_one_or_none()
    return expires is None or _aware(expires) <= now


async def claim(
    conn: AsyncConnection, name: str, holder: str, now: datetime, until: datetime
) -> bool:
    """Take the lease ``name`` for ``holder`` until ``until`` if it is free at ``now``; whether
    it was taken (in the caller's write transaction)."""
    await conn.execute(
        _insert(conn)
        .values(name=name, expires_at=_EXPIRED)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    result = await conn.execute(
        update(Lease)
        .where(Lease.name == name, Lease.expires_at <= now)
        .values(holder=holder, claimed_at=now, expires_at=until)
    )
    return bool(result.rowcount == 1)


async def extend(conn: AsyncConnection, name: str, holder: str, until: datetime) -> bool:
    """Keep holding the lease until ``until``; False when ``holder`` lost it."""
    result = await conn.execute(
        update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=until)
    )
    return bool(result.rowcount == 1)


async def finish(
    conn: AsyncConnection,
    name: str,
    holder: str,
    finished: datetime,
    next_due: datetime,
    detail: str,
) -> None:
    """Record the run's end and what it did; the next run is due at ``next_due``."""
    await conn.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(finished_at=finished, expires_at=next_due, detail=detail[:2000])
    )


async def leases(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every lease, by name (status)."""
    rows = await conn.execute(select(Lease).order_by(Lease.name))
    return [
        {
            "name": r.name,
            "holder": r.holder,
            "claimed_at": _aware(r.claimed_at),
            "expires_at": _aware(r.expires_at),
            "finished_at": _aware(r.finished_at),
            "detail": r.detail,
        }
        for r in rows
    ]


def _aware(value: Any) -> Any:
    """SQLite gives naive datetimes back: they were written in UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value

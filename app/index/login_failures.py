"""Failed sign-ins per user name and per client address (``login_failure``), issue 22.

Counted in the index so that every replica locks the same keys. One statement per failure (an
upsert that restarts the count when the window has passed), one to read the keys of an attempt,
one to clear a user's count after a success; stale rows are removed as failures come.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import LoginFailure

__all__ = ["FailureCount", "clear_failures", "failure_counts", "record_failure"]

#: the key column's width (a name of 64 characters, an IPv6 address with its zone)
KEY_CHARS = 160


@dataclass(frozen=True, slots=True)
class FailureCount:
    failures: int
    window_start: datetime
    last_failure: datetime


async def failure_counts(conn: AsyncConnection, keys: Sequence[str]) -> dict[str, FailureCount]:
    """The counts of ``keys`` that have failures on record."""
    if not keys:
        return {}
    rows = await conn.execute(
        select(
            LoginFailure.key,
            LoginFailure.failures,
            LoginFailure.window_start,
            LoginFailure.last_failure,
        ).where(LoginFailure.key.in_([k[:KEY_CHARS] for k in keys]))
    )
    return {
        key: FailureCount(failures, _utc(start), _utc(last))
        for key, failures, start, last in rows.all()
    }


def _utc(value: datetime) -> datetime:
    """SQLite gives back naive datetimes: every time here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def record_failure(
    conn: AsyncConnection,
    keys: Sequence[str],
    *,
    now: datetime,
    window_start_after: datetime,
    stale_before: datetime,
) -> None:
    """Count a failure for each key: the count restarts at 1 when its window began before
    ``window_start_after``. Rows whose last failure is older than ``stale_before`` go."""
    await conn.execute(delete(LoginFailure).where(LoginFailure.last_failure < stale_before))
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    for key in keys:
        statement = insert(LoginFailure).values(
            key=key[:KEY_CHARS], failures=1, window_start=now, last_failure=now
        )
        expired = LoginFailure.window_start < window_start_after
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[LoginFailure.key],
                set_={
                    "failures": case((expired, 1), else_=LoginFailure.failures + 1),
                    "window_start": case((expired, now), else_=LoginFailure.window_start),
                    "last_failure": now,
                },
            )
        )


async def clear_failures(conn: AsyncConnection, keys: Sequence[str]) -> None:
    if keys:
        await conn.execute(
            delete(LoginFailure).where(LoginFailure.key.in_([k[:KEY_CHARS] for k in keys]))
        )

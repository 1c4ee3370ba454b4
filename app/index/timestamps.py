"""Timestamps as read back from either database: aware UTC.

PostgreSQL returns ``timestamptz`` values aware; SQLite stores the text and returns them naive.
Values are always written in UTC, so a naive one read back is UTC.
"""

from datetime import UTC, datetime

__all__ = ["as_utc"]


def as_utc(value: datetime) -> datetime:
    """``value`` as aware UTC (naive is taken as UTC).

    >>> as_utc(datetime(2026, 12, 7, 12, 0)).isoformat()
    '2026-12-07T12:00:00+00:00'
    """
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

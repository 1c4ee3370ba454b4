"""Reading the audit chain (``audit_event``): the admin search, the export, the chain walk.

Rows come back as dicts by column name, in chain order (``seq``) or newest first.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import (
    AUDIT_KEY_CHARS,
    AUDIT_KEY_COLUMNS,
    AUDIT_KEY_TAGS,
    AUDIT_KEYS,
    AuditEvent,
)

__all__ = ["CHUNK", "AuditFilter", "after", "search"]

#: rows read per query when walking the chain (export, verification)
CHUNK: Final = 1000


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The admin query's filters (all optional, combined with AND)."""

    patient_id: str | None = None
    study_uid: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def search(
    conn: AsyncConnection, filters: AuditFilter, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the rows matching ``filters`` (newest first) and the number matching."""
    postgresql = conn.dialect.name == "postgresql"
    query = _filtered(select(AuditEvent), filters, postgresql=postgresql)
    count = _filtered(select(func.count()).select_from(AuditEvent), filters, postgresql=postgresql)
    total: int = (await conn.execute(count)).scalar_one()
    rows = await conn.execute(query.order_by(AuditEvent.seq.desc()).limit(limit).offset(offset))
    return [dict(row) for row in rows.mappings()], total


async def after(
    conn: AsyncConnection,
    seq: int | None,
    *,
    filters: AuditFilter | None = None,
    limit: int = CHUNK,
) -> list[dict[str, Any]]:
    """At most ``limit`` rows after ``seq`` (from the first when None) in chain order, matching
    ``filters`` when given."""
    query = select(AuditEvent)
    if seq is not None:
        query = query.where(AuditEvent.seq > seq)
    if filters is not None:
        query = _filtered(query, filters, postgresql=conn.dialect.name == "postgresql")
    rows = await conn.execute(query.order_by(AuditEvent.seq).limit(limit))
    return [dict(row) for row in rows.mappings()]


def _utc(value: datetime) -> datetime:
    """Aware UTC (a naive bound is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _filtered(query: Select[Any], f: AuditFilter, *, postgresql: bool) -> Select[Any]:
    """``query`` restricted to the rows ``f`` matches.

    On PostgreSQL the equality filters also go through ``audit_keys(...) @> ARRAY[...]``, the
    form its GIN index serves (alembic revision 0008); SQLite has a B-tree per column.
    """
    wanted = {name: value for name in AUDIT_KEY_COLUMNS if (value := getattr(f, name)) is not None}
    if postgresql and wanted:
        query = query.where(
            AUDIT_KEYS.contains(
                [AUDIT_KEY_TAGS[name] + value[:AUDIT_KEY_CHARS] for name, value in wanted.items()]
            )
        )
    for name, value in wanted.items():
        query = query.where(getattr(AuditEvent, name) == value)
    if f.since is not None:
        query = query.where(AuditEvent.time >= _utc(f.since))
    if f.until is not None:
        query = query.where(AuditEvent.time < _utc(f.until))
    return query

"""SQL of the audit journal (``audit_journal``): audit rows committed with their writes.

A write adds its row inside its own transaction (:func:`add`); the audit writer reads rows
(:func:`rows`, :func:`older_than`) and, inside the transaction that appends to the hash chain and
under the chain's lock, deletes the ones it takes (:func:`claim`, :func:`claim_driver`). A row is
chained only by the writer whose delete removed it, so two writers never chain the same row.
Nothing here commits: the callers own their transactions.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import AuditJournal, Base

__all__ = ["FIELDS", "add", "claim", "claim_driver", "older_than", "pending", "rows"]

#: a row's columns besides its id: an audit event's content (``app.services.audit``)
FIELDS: Final = (
    "time",
    "actor",
    "client_id",
    "source",
    "action",
    "outcome",
    "status",
    "study_uid",
    "series_uid",
    "instance_uid",
    "patient_id",
    "count",
    "request_id",
    "detail",
)
_COLUMNS: Final = (AuditJournal.id, *(getattr(AuditJournal, name) for name in FIELDS))
#: PostgreSQL, on the audit writer's own connection (asyncpg, inside its chain transaction)
_PG_CLAIM: Final = "DELETE FROM audit_journal WHERE id = ANY($1::bigint[]) RETURNING id"


_TABLE: Final = Base.metadata.tables["audit_journal"]
#: built once: a statement built per row (``insert(...).values(row)``) cost 0.6 ms of CPU
_INSERT: Final = insert(_TABLE).returning(_TABLE.c.id)
#: PostgreSQL, straight on the driver inside the write's transaction: 0.2 ms of CPU per row
#: where :data:`_INSERT` through SQLAlchemy cost 0.35 (the write pays it, once per transaction)
_PG_INSERT: Final = (
    f"INSERT INTO audit_journal ({', '.join(FIELDS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(FIELDS) + 1))}) RETURNING id"
)


async def add(conn: AsyncConnection, values: dict[str, Any]) -> int:
    """Add one row (``values`` by :data:`FIELDS`) in the caller's transaction; its id."""
    if conn.dialect.driver == "asyncpg":
        driver: Any = (await conn.get_raw_connection()).driver_connection
        # SQLAlchemy begins the driver's transaction at its first statement: before that, the
        # insert must go through SQLAlchemy, or it would commit on its own
        if driver.is_in_transaction():
            row_id: int = await driver.fetchval(_PG_INSERT, *(values[n] for n in FIELDS))
            return row_id
    row_id = (await conn.execute(_INSERT, values)).scalar_one()
    return row_id


async def rows(conn: AsyncConnection, ids: Sequence[int]) -> list[dict[str, Any]]:
    """The rows among ``ids`` that are still in the journal, in id order."""
    if not ids:
        return []
    result = await conn.execute(
        select(*_COLUMNS).where(AuditJournal.id.in_(sorted(set(ids)))).order_by(AuditJournal.id)
    )
    return [dict(row) for row in result.mappings()]


async def older_than(conn: AsyncConnection, cutoff: datetime, limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` rows written before ``cutoff``, oldest (lowest id) first."""
    result = await conn.execute(
        select(*_COLUMNS).where(AuditJournal.time < cutoff).order_by(AuditJournal.id).limit(limit)
    )
    return [dict(row) for row in result.mappings()]


async def claim(conn: AsyncConnection, ids: Sequence[int]) -> set[int]:
    """Delete the rows among ``ids`` in the caller's transaction; the ids it deleted (those
    another writer took already are gone)."""
    if not ids:
        return set()
    result = await conn.execute(
        delete(AuditJournal).where(AuditJournal.id.in_(sorted(set(ids)))).returning(AuditJournal.id)
    )
    return set(result.scalars())


async def claim_driver(driver: Any, ids: Sequence[int]) -> set[int]:
    """:func:`claim` on a bare asyncpg connection inside its open transaction (the PostgreSQL
    audit writer's, which runs its chain transaction on the driver)."""
    if not ids:
        return set()
    return {row[0] for row in await driver.fetch(_PG_CLAIM, sorted(set(ids)))}


async def pending(conn: AsyncConnection) -> int:
    """The number of rows waiting to be chained."""
    count: int = (await conn.execute(select(func.count()).select_from(AuditJournal))).scalar_one()
    return count

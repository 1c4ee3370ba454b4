"""Reading the audit trail: the admin search, the export in chain order, and the verification
of the chain (:class:`~app.services.audit.chain.ChainWalk` over every row)."""

from collections.abc import AsyncIterator
from typing import Any

from app.index.audit import events
from app.index.audit import journal as journal_table
from app.index.audit.events import AuditFilter
from app.index.db import Database
from app.services.audit.chain import ChainReport, ChainWalk, as_json

__all__ = ["export", "search", "verify"]


async def search(
    db: Database, filters: AuditFilter, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of events matching ``filters`` (newest first) and the number matching."""
    async with db.read() as conn:
        rows, total = await events.search(conn, filters, limit=limit, offset=offset)
    return [as_json(r) for r in rows], total


async def export(db: Database, filters: AuditFilter | None = None) -> AsyncIterator[dict[str, Any]]:
    """Every event (matching ``filters``) in chain order, read in chunks."""
    last = 0
    while True:
        async with db.read() as conn:
            chunk = await events.after(conn, last, filters=filters)
        if not chunk:
            return
        for row in chunk:
            yield as_json(row)
        last = chunk[-1]["seq"]


async def verify(db: Database) -> ChainReport:
    """Walk the chain: every row's hash recomputed, every link and ``seq`` checked; the
    journal rows waiting to be chained are counted (``pending``), not problems."""
    walk = ChainWalk()
    async with db.read() as conn:
        walk.report.pending = await journal_table.pending(conn)
    last: int | None = None
    while True:
        async with db.read() as conn:
            chunk = await events.after(conn, last)
        if not chunk:
            return walk.report
        walk.check(chunk)
        last = chunk[-1]["seq"]

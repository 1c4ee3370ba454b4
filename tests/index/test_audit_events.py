"""Reading the audit chain (``app.index.audit.events``), on both databases: the walk in chain
order by chunks, with and without filters, and the admin search's page and count."""

from datetime import UTC, datetime, timedelta
from typing import Any

from app.index import migrate
from app.index.audit import events
from app.index.audit.chain import COLUMNS, ChainStore
from app.index.audit.events import AuditFilter
from app.index.db import Database

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _row(seq: int, **fields: Any) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(COLUMNS)
    values.update(action="retrieve", outcome="success", time=T0 + timedelta(minutes=seq))
    values.update(fields, seq=seq, prev_hash=f"{seq - 1:064x}", hash=f"{seq:064x}")
    return tuple(values[name] for name in COLUMNS)


async def test_the_walk_and_the_search_find_exactly_the_matching_rows(
    fresh_database_url: str,
) -> None:
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    store = ChainStore(db)
    rows = [
        _row(seq, actor="dr" if seq % 2 else "clerk", patient_id="P1" if seq <= 3 else "P2")
        for seq in range(1, 8)
    ]
    try:
        async with store.transaction() as tx:
            tx.append(rows)
        await store.release()
        async with db.read() as conn:
            walked: list[int] = []
            last: int | None = None
            while chunk := await events.after(conn, last, limit=3):
                assert len(chunk) <= 3
                walked += [row["seq"] for row in chunk]
                last = chunk[-1]["seq"]
            assert walked == list(range(1, 8))
            first = (await events.after(conn, None, limit=1))[0]
            assert first["time"].replace(tzinfo=UTC) == T0 + timedelta(minutes=1)
            assert (first["actor"], first["patient_id"], first["hash"]) == ("dr", "P1", f"{1:064x}")

            doctor = AuditFilter(actor="dr", patient_id="P2")
            assert [r["seq"] for r in await events.after(conn, 0, filters=doctor)] == [5, 7]
            assert [r["seq"] for r in await events.after(conn, 5, filters=doctor)] == [7]

            page, total = await events.search(conn, AuditFilter(actor="dr"), limit=2, offset=1)
            assert ([r["seq"] for r in page], total) == ([5, 3], 4)  # newest first
            # bounds: since inclusive, until exclusive; a naive bound is UTC
            window = AuditFilter(
                since=T0 + timedelta(minutes=2),
                until=(T0 + timedelta(minutes=4)).replace(tzinfo=None),
            )
            page, total = await events.search(conn, window, limit=10, offset=0)
            assert ([r["seq"] for r in page], total) == ([3, 2], 2)
            page, total = await events.search(conn, AuditFilter(action="store"), limit=10, offset=0)
            assert (page, total) == ([], 0)
    finally:
        await store.release()
        await db.close()

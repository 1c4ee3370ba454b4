"""The asyncpg pool of the retrieve look-ups (``Database.driver_connection``), on PostgreSQL."""

import asyncio

import pytest
from sqlalchemy import text

from app.index.db import Database


async def test_driver_pool_is_lazy_bounded_autocommit_and_recovers(database_url: str) -> None:
    """Opened on first use with SQLAlchemy's connect arguments; at most half the pool size at
    once; no transaction left behind; a connection the server killed fails one look-up, the
    next gets a live one; close() closes it. SQLite has none."""
    db = Database(database_url, pool_size=4)
    try:
        if db.is_sqlite:
            with pytest.raises(RuntimeError, match="asyncpg"):
                async with db.driver_connection():
                    pass
            return
        assert db._driver_pool is None
        async with db.driver_connection() as conn:
            assert await conn.fetchval("SELECT current_database()") == db.url.database
            assert not conn.is_in_transaction()
            pid = await conn.fetchval("SELECT pg_backend_pid()")

        held: list[object] = []
        release = asyncio.Event()

        async def hold() -> None:
            async with db.driver_connection() as conn:
                held.append(conn)
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(3)]
        await asyncio.sleep(0.3)
        assert len(held) == 2  # max(2, pool_size // 2): the third waits its turn
        release.set()
        await asyncio.gather(*holders)
        assert len(held) == 3

        async with db.engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        failures = 0
        for _ in range(3):
            try:
                async with db.driver_connection() as conn:
                    assert await conn.fetchval("SELECT 1") == 1
            except Exception:  # the killed connection, once
                failures += 1
        assert failures <= 1
        pool = db._driver_pool
        assert pool is not None
    finally:
        await db.close()
    if not db.is_sqlite:
        assert db._driver_pool is None
        assert pool.is_closing()

"""The migrations make exactly the models' schema, on PostgreSQL and SQLite, and reverse cleanly."""

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from app.index import migrate
from app.index.models import Base


def _diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {"alembic_version"}


async def _inspect(url: str) -> tuple[list[object], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
            tables = await conn.run_sync(_tables)
    finally:
        await engine.dispose()
    return diff, tables


def test_migrations_match_models_and_reverse(fresh_database_url: str) -> None:
    empty_database = fresh_database_url
    asyncio.run(migrate.upgrade(empty_database))
    diff, tables = asyncio.run(_inspect(empty_database))
    assert diff == []
    assert tables == {"study", "series", "instance", "tombstone", "audit_event"}
    asyncio.run(migrate.downgrade(empty_database, "base"))
    assert asyncio.run(_inspect(empty_database))[1] == set()
    asyncio.run(migrate.upgrade(empty_database))
    assert asyncio.run(_inspect(empty_database))[0] == []

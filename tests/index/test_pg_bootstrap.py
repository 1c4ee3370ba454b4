"""The tests' PostgreSQL fallback: a private cluster started from the installed binaries.

On a machine where no server listens, the test session starts one as the ``postgres`` user
(PostgreSQL refuses root); this proves that path works here, so CI never silently lacks it.
"""

import asyncio

import asyncpg

from app.index import migrate
from tests import pg


def test_private_cluster_starts_migrates_and_stops() -> None:
    with pg.private_cluster() as server, pg.throwaway_database(server) as url:
        assert server.host == "127.0.0.1"
        asyncio.run(migrate.upgrade(url))

        async def tables() -> set[str]:
            conn = await asyncpg.connect(
                host=server.host, port=server.port, user="postgres", database=url.rsplit("/", 1)[1]
            )
            try:
                rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
            finally:
                await conn.close()
            return {r["tablename"] for r in rows}

        assert {"study", "series", "instance"} <= asyncio.run(tables())

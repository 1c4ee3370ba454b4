"""Apply the Alembic migrations (the only way the schema is made, DESIGN.md §3).

Alembic (with Mako) is loaded only when a migration runs: it costs every process that imports
the services 11 MB, and servers and import workers on PostgreSQL never migrate.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import app

if TYPE_CHECKING:
    from alembic.config import Config

#: the PostgreSQL advisory lock that serialises migrations (an arbitrary constant of ours)
MIGRATION_LOCK = 0x4C42_4D49  # "LBMI"


def migrations_dir() -> Path:
    """The migrations: ``LIGHTBOX_MIGRATIONS_DIR``, the repository's ``alembic/``, or ./alembic."""
    candidates = [
        os.environ.get("LIGHTBOX_MIGRATIONS_DIR"),
        Path(app.__file__).resolve().parent.parent / "alembic",
        Path.cwd() / "alembic",
    ]
    for candidate in candidates:
        if (
            candidate
            and (Path(candidate) / "env.py").is_file()
            and (Path(candidate) / "versions").is_dir()
        ):
            return Path(candidate)
    raise RuntimeError(
        "the alembic/ migrations directory was not found; set LIGHTBOX_MIGRATIONS_DIR"
    )


def alembic_config(url: str | None = None) -> "Config":
    """An Alembic config pointing at the migrations directory."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision``."""
    from alembic import command

    await _run(url, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at ``url`` down to ``revision``."""
    from alembic import command

    await _run(url, lambda cfg: command.downgrade(cfg, revision))


async def _run(url: str, action: "_Action") -> None:
    engine = create_async_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            # WAL is a property of the file: set here, by the one process migrating, it is never
            # switched on by servers' first connections at once (a switch does not wait for a
            # busy database, so all but one of them would fail)
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # replicas (or init jobs) migrating at once: one at a time, in the transaction
                # that migrates, so the later ones find the schema current and do nothing
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            await conn.run_sync(_with_connection, url, action)
    finally:
        await engine.dispose()


def _with_connection(conn: Connection, url: str, action: "_Action") -> None:
    cfg = alembic_config(url)
    cfg.attributes["connection"] = conn
    action(cfg)


_Action = Callable[["Config"], None]

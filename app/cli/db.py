"""``lightbox db``: the index schema (upgrade, downgrade, backfill)."""

import asyncio
import sys
from typing import Annotated, Any

import typer

from app.cli.root import db_cli
from app.config import Settings


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the schema migrations to LIGHTBOX_DATABASE_URL."""
    from app.index import migrate

    settings = Settings()
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(migrate.upgrade(settings.resolved_database_url(), revision))
    print(f"index schema at {revision}")


@db_cli.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert the schema to an earlier revision ('base' drops everything)."""
    from app.index import migrate

    asyncio.run(migrate.downgrade(Settings().resolved_database_url(), revision))


@db_cli.command("backfill")
def db_backfill() -> None:
    """Fill index columns that later releases record at ingest, for instances stored before
    (today: whether each blob has the PS3.10 preamble, which lets retrieve send a Content-Length).
    Safe while the server runs, and to repeat."""

    async def run() -> Any:
        from app.services.container import open_services

        async with open_services(Settings()) as services:
            return await services.maintenance.backfill()

    report = asyncio.run(run())
    print(f"recorded {report.recorded} instances; {report.missing_blobs} blobs missing (see fsck)")
    sys.exit(1 if report.missing_blobs else 0)


@db_cli.command("prepare", hidden=True)
def db_prepare(
    migrate: Annotated[bool, typer.Option(help="apply the migrations first")] = True,
    first_start: Annotated[
        str | None, typer.Option(help="print the first administrator's steps for this site URL")
    ] = None,
) -> None:
    """What ``lightbox serve`` does before its workers start, in one child process (the server's
    supervisor never loads SQLAlchemy): migrate, and say how to create the first administrator
    when there is none."""
    settings = Settings()
    if migrate:
        from app.index import migrate as migrations

        if settings.is_sqlite:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(migrations.upgrade(settings.resolved_database_url()))
    if first_start is not None:
        from app.cli.users import first_admin_steps

        steps = first_admin_steps(settings, first_start)
        if steps:
            print(steps, flush=True)

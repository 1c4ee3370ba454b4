"""The migrations make exactly the models' schema, on PostgreSQL and SQLite, and reverse cleanly."""

import asyncio
import sqlite3
import warnings
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from app.dicom.query import parse_qido
from app.index import migrate
from app.index.db import Database
from app.index.models import Base, Study, on_this_dialect
from app.index.search import conditions
from app.services.audit import GENESIS, AuditFilter, AuditLog, AuditRecord
from app.services.audit.chain import chain_rows, named


def _diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(
        conn,
        opts={"compare_type": True, "include_object": on_this_dialect(conn.dialect.name)},
    )
    with warnings.catch_warnings():
        # Alembic warns of an expression index before asking include_object; those are
        # PostgreSQL's only (the audit keys, the text prefixes of revision 0009), compared there
        warnings.filterwarnings(
            "ignore",
            "autogenerate skipping .* '(ix_audit_event_keys|ix_[a-z_]+_prefix)'; dialect 'sqlite'",
        )
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
    assert tables == {
        "study",
        "series",
        "instance",
        "tombstone",
        "audit_event",
        "audit_journal",
        "issued_token",
        "lease",
        "user_account",
        "login_failure",
        "remote_ae",
        "job",
        "job_item",
    }
    asyncio.run(migrate.downgrade(empty_database, "base"))
    assert asyncio.run(_inspect(empty_database))[1] == set()
    asyncio.run(migrate.upgrade(empty_database))
    assert asyncio.run(_inspect(empty_database))[0] == []


async def test_leaner_audit_indexes_keep_the_chain(fresh_database_url: str) -> None:
    """Revision 0007 (``seq`` the key, no ``id``; BRIN on ``time`` in PostgreSQL) keeps every
    stored row and hash, and the log appends after them; on PostgreSQL the append-only trigger
    stays."""
    url = fresh_database_url
    await migrate.upgrade(url, "0006")
    chained = chain_rows(
        [
            AuditRecord(
                action="retrieve", outcome="success", study_uid=f"1.2.{i}", request_id=f"{i}"
            )
            for i in range(30)
        ],
        {},
        0,
        GENESIS,
    )
    rows = [named(row) for row in chained]
    db = Database(url)
    try:
        async with db.write() as conn:  # the 0006 table, with its id column filled by itself
            columns = ", ".join(rows[0])
            values = ", ".join(f":{name}" for name in rows[0])
            await conn.execute(text(f"INSERT INTO audit_event ({columns}) VALUES ({values})"), rows)
    finally:
        await db.close()
    await migrate.upgrade(url)
    db = Database(url)
    audit = AuditLog(db)
    try:
        report = await audit.verify()
        assert (report.rows, report.problems) == (30, [])
        # rows stored before revision 0008 are found through its index as well
        items, total = await audit.search(AuditFilter(study_uid="1.2.5"), limit=10, offset=0)
        assert (total, [i["request_id"] for i in items]) == (1, ["5"])
        await audit.record(action="search", outcome="success")
        await audit.flush()
        report = await audit.verify()
        assert (report.rows, report.problems) == (31, [])
        if not db.is_sqlite:
            with pytest.raises(DBAPIError, match="append-only"):
                async with db.write() as conn:
                    await conn.execute(text("DELETE FROM audit_event WHERE seq = 1"))
            async with db.read() as conn:
                method = await conn.scalar(
                    text(
                        "SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                        "JOIN pg_am am ON am.oid = c.relam WHERE c.relname = 'ix_audit_event_time'"
                    )
                )
            assert method == "brin"
    finally:
        await audit.close()
        await db.close()


async def test_a_migrated_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    """The migration switches a new SQLite file to WAL, so the servers' first connections never
    switch it themselves: a switch does not wait for a busy database, and several processes
    connecting at once (two workers, four writers) made all but one fail with "database is
    locked". Those connections find WAL and leave it as it is."""
    path = tmp_path / "index.db"
    await migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.write() as conn:  # a connection of the server's kind: WAL kept
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
        assert mode == "wal"
    finally:
        await db.close()


async def test_revision_0009_keeps_the_rows_and_takes_any_value(fresh_database_url: str) -> None:
    """Revision 0009 (DICOM integers BIGINT, text B-trees on a prefix on PostgreSQL) keeps the
    stored rows; afterwards a 12-digit IS and a text beyond a B-tree entry are stored, and an
    equality search on PostgreSQL finds its row through the prefix index."""
    url = fresh_database_url
    await migrate.upgrade(url, "0008")
    db = Database(url)
    try:
        async with db.write() as conn:
            await conn.execute(
                text(
                    "INSERT INTO study (id, study_uid, patient_id, attrs_json) "
                    "VALUES (1, '1.1', 'PID', '')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO series (id, series_uid, study_id, series_number, attrs_json) "
                    "VALUES (1, '1.1.1', 1, 2147483647, '')"
                )
            )
    finally:
        await db.close()
    await migrate.upgrade(url)
    long = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(3000))  # 9,000 bytes
    db = Database(url)
    try:
        async with db.write() as conn:
            assert (await conn.execute(text("SELECT series_number FROM series"))).scalar() == (
                2147483647
            )
            await conn.execute(
                text(
                    "INSERT INTO study (id, study_uid, patient_id, study_description, attrs_json) "
                    "VALUES (2, '1.2', :long, :long, '')"
                ),
                {"long": long},
            )
            await conn.execute(
                text(
                    "INSERT INTO series (id, series_uid, study_id, series_number, attrs_json) "
                    "VALUES (2, '1.2.1', 2, 999999999999, '')"
                )
            )
        query = parse_qido([("PatientID", long)])
        where = conditions(query, sqlite=db.is_sqlite)
        async with db.read() as conn:
            found = (await conn.execute(select(Study.id).where(*where))).scalars().all()
            assert found == [2]
            if not db.is_sqlite:
                await conn.execute(text("SET enable_seqscan = off"))
                sql = (
                    select(Study.id)
                    .where(*where)
                    .compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
                )
                plan = await conn.exec_driver_sql(f"EXPLAIN {sql}")
                assert "ix_study_patient_id_prefix" in "\n".join(row[0] for row in plan)
    finally:
        await db.close()


def test_concurrent_upgrades_on_postgresql(pg_server: str) -> None:
    """Replicas (or init jobs) upgrading at once: the advisory lock serialises them, the later
    ones find the schema current (PostgreSQL; SQLite is migrated by its one server)."""
    from sqlalchemy.engine import make_url

    from tests import pg

    async def upgrade_together(url: str) -> None:
        await asyncio.gather(*(migrate.upgrade(url) for _ in range(4)))

    with pg.throwaway_database(make_url(pg_server)) as url:
        asyncio.run(upgrade_together(url))
        diff, tables = asyncio.run(_inspect(url))
        assert diff == []
        assert "issued_token" in tables

"""A write's audit row is as durable as the write (GEN-10, DEL-03; issue 19, class 6): it commits
in the write's own transaction (the audit journal), the request's row stands for it when written,
and what a dead process left is chained by the next start or by a sweep, once and only once."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.index import migrate
from app.index.audit import journal as audit_journal
from app.index.db import Database
from app.services.audit import AuditFilter, AuditLog, AuditRecord, Outcome, WriteAudit
from tests import pg
from tests.auth.helpers import auth_client, auth_settings
from tests.factories import make_instance, multipart, stow_headers

ROOT = "/dicom-web"
FAR = datetime(9999, 1, 1, tzinfo=UTC)


async def _journal(db: Database, **match: Any) -> list[dict[str, Any]]:
    """The journal rows (waiting to be chained) whose columns equal ``match``."""
    async with db.read() as conn:
        rows = await audit_journal.older_than(conn, FAR, 100_000)
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


async def _chained(audit: AuditLog, request_id: str) -> list[dict[str, Any]]:
    items, _ = await audit.search(AuditFilter(), limit=1000, offset=0)
    return sorted((i for i in items if i["request_id"] == request_id), key=lambda i: i["seq"])


async def _journal_write(db: Database, write: WriteAudit, **fields: Any) -> None:
    """What a write service does: its audit row in its own (committed) transaction (here its
    first statement: on PostgreSQL the insert then goes through SQLAlchemy, which begins the
    transaction; after the ingest's or delete's own statements it goes straight to asyncpg)."""
    async with db.write() as conn:
        await write.journal(conn, AuditRecord(action="store", outcome=Outcome.SUCCESS, **fields))


async def test_a_store_commits_its_row_with_the_write_and_its_request_row_replaces_it(
    database_url: str, tmp_path: Path
) -> None:
    """Once the STOW is answered its row is committed (in the journal), though the request's own
    row is still lingering in the queue; when that one is chained it stands for the journal row,
    which goes: one row per request, as before."""
    settings = auth_settings(database_url, tmp_path / "data", audit_linger_seconds=30)
    study = generate_uid()
    patient = f"PID-{generate_uid()[-8:]}"
    parts = [make_instance(StudyInstanceUID=study, PatientID=patient) for _ in range(2)]
    async with auth_client(settings, client_addr=("10.1.2.3", 4000)) as (services, http, tokens):
        mine = f"stow-{generate_uid()[-12:]}"
        response = await http.post(
            f"{ROOT}/studies",
            content=multipart(parts),
            headers={**stow_headers(), **tokens.headers(subject="modality"), "X-Request-ID": mine},
        )
        assert response.status_code == 200, response.text
        [row] = await _journal(services.db, request_id=mine)
        assert (row["action"], row["outcome"], row["status"]) == ("store", "success", None)
        assert (row["count"], row["study_uid"], row["patient_id"]) == (2, study, patient)
        assert (row["actor"], row["source"]) == ("modality", "10.1.2.3")
        assert await _chained(services.audit, mine) == []  # the request's row still lingers

        await services.audit.flush()
        [chained] = await _chained(services.audit, mine)
        assert (chained["action"], chained["status"], chained["count"]) == ("store", 200, 2)
        assert (chained["study_uid"], chained["patient_id"]) == (study, patient)
        assert await _journal(services.db, request_id=mine) == []
        report = await services.audit.verify()
        assert report.ok, report.problems


async def test_a_delete_commits_its_row_with_the_write(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data", audit_linger_seconds=30)
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    patient = f"PID-{generate_uid()[-8:]}"
    body = multipart(
        [
            make_instance(
                StudyInstanceUID=study,
                SeriesInstanceUID=series,
                SOPInstanceUID=sop,
                PatientID=patient,
            )
        ]
    )
    async with auth_client(settings) as (services, http, tokens):
        admin = tokens.headers(subject="archivist")
        stored = await http.post(
            f"{ROOT}/studies", content=body, headers={**stow_headers(), **admin}
        )
        assert stored.status_code == 200
        mine = f"delete-{generate_uid()[-12:]}"
        deleted = await http.delete(
            f"{ROOT}/studies/{study}", headers={**admin, "X-Request-ID": mine}
        )
        assert deleted.status_code == 204
        [row] = await _journal(services.db, request_id=mine)
        assert (row["action"], row["count"], row["actor"]) == ("delete", 1, "archivist")
        assert (row["study_uid"], row["patient_id"]) == (study, patient)  # read in the delete

        await services.audit.flush()
        [chained] = await _chained(services.audit, mine)
        assert (chained["action"], chained["status"], chained["count"]) == ("delete", 204, 1)
        assert chained["patient_id"] == patient
        assert await _journal(services.db, request_id=mine) == []


async def test_refused_stores_and_reads_stay_on_the_batched_path(
    database_url: str, tmp_path: Path
) -> None:
    """Only a transaction that wrote journals a row: a STOW refused whole and a search add none
    (their rows are queued, as before)."""
    settings = auth_settings(database_url, tmp_path / "data", audit_linger_seconds=30)
    async with auth_client(settings) as (services, http, tokens):
        refused = f"refused-{generate_uid()[-12:]}"
        response = await http.post(
            f"{ROOT}/studies/{generate_uid()}",  # the instance is not of this study: 409
            content=multipart([make_instance()]),
            headers={**stow_headers(), **tokens.headers(), "X-Request-ID": refused},
        )
        assert response.status_code == 409
        search = f"search-{generate_uid()[-12:]}"
        found = await http.get(
            f"{ROOT}/studies", headers={**tokens.headers(), "X-Request-ID": search}
        )
        assert found.status_code in (200, 204)
        assert await _journal(services.db, request_id=refused) == []
        assert await _journal(services.db, request_id=search) == []
        await services.audit.flush()
        [row] = await _chained(services.audit, refused)
        assert (row["action"], row["outcome"], row["status"]) == ("store", "failure", 409)
        assert len(await _chained(services.audit, search)) == 1


async def test_a_failed_write_request_keeps_its_journal_rows_beside_its_own(
    fresh_database_url: str,
) -> None:
    """A request that committed a write and then failed (the client went away after a batch,
    an error after a commit): its row does not say what was written, so the journal rows are
    chained too, before it."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=0.05)
    try:
        write = audit.for_write(actor="viewer", request_id="r-failed")
        await _journal_write(db, write, count=3, study_uid="1.2.3")
        await _journal_write(db, write, count=2, study_uid="1.2.3")
        await audit.record(
            AuditRecord(
                action="store",
                outcome=Outcome.FAILURE,
                status=400,
                actor="viewer",
                request_id="r-failed",
                supersedes=write.release(),
            )
        )
        await audit.flush()
        rows = await _chained(audit, "r-failed")
        assert [(r["count"], r["status"]) for r in rows] == [(3, None), (2, None), (None, 400)]
        assert all(r["actor"] == "viewer" for r in rows)
        assert "committed with the write" not in (rows[2]["detail"] or "")
        assert await _journal(db) == []
        report = await audit.verify()
        assert (report.ok, report.pending, report.rows) == (True, 0, 3)
    finally:
        await audit.close()
        await db.close()


async def test_the_next_start_chains_what_a_dead_process_left(fresh_database_url: str) -> None:
    """Rows committed with their writes by a process that died before its requests' rows were
    written: verify counts them as pending (no problem), and ``recover`` chains each once."""
    await migrate.upgrade(fresh_database_url)
    dead_db = Database(fresh_database_url)
    dead = AuditLog(dead_db)
    for n in range(3):
        write = dead.for_write(actor="modality", source="10.9.8.7", request_id=f"lost-{n}")
        await _journal_write(dead_db, write, count=1, instance_uid=f"1.2.{n}", detail="x")
    await dead.close()  # nothing queued: its requests never ended
    await dead_db.close()

    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=30)
    try:
        before = await audit.verify()
        assert (before.ok, before.rows, before.pending) == (True, 0, 3)
        await audit.recover()
        await asyncio.wait_for(audit.flush(), 10)  # not held up by the linger either
        for n in range(3):
            [row] = await _chained(audit, f"lost-{n}")
            assert (row["action"], row["outcome"], row["status"]) == ("store", "success", None)
            assert (row["instance_uid"], row["source"]) == (f"1.2.{n}", "10.9.8.7")
        after = await audit.verify()
        assert (after.ok, after.rows, after.pending) == (True, 3, 0)
    finally:
        await audit.close()
        await db.close()


async def test_writers_racing_for_the_journal_chain_each_row_once(
    fresh_database_url: str,
) -> None:
    """Three server processes starting at once each sweep the same orphans: a row is chained by
    the writer whose transaction deleted it, so never twice."""
    await migrate.upgrade(fresh_database_url)
    seed_db = Database(fresh_database_url)
    seed = AuditLog(seed_db)
    for n in range(40):
        await _journal_write(seed_db, seed.for_write(request_id=f"orphan-{n}"), count=1)
    await seed.close()
    await seed_db.close()

    async def start() -> None:
        db = Database(fresh_database_url)
        audit = AuditLog(db, batch_size=8)
        try:
            await audit.recover()
            await audit.flush()
        finally:
            await audit.close()
            await db.close()

    await asyncio.gather(*(start() for _ in range(3)))
    db = Database(fresh_database_url)
    audit = AuditLog(db)
    try:
        items, total = await audit.search(AuditFilter(), limit=1000, offset=0)
        assert total == 40
        assert sorted(i["request_id"] for i in items) == sorted(f"orphan-{n}" for n in range(40))
        report = await audit.verify()
        assert (report.ok, report.pending) == (True, 0)
    finally:
        await audit.close()
        await db.close()


async def test_a_sweep_by_age_takes_orphans_but_not_running_requests(
    fresh_database_url: str,
) -> None:
    """A running server chains another process's journal rows once they are older than the
    grace; its own requests still running keep theirs for their own rows to stand for."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    other = AuditLog(db)  # another process: its request will never end
    audit = AuditLog(db, linger=0.01, journal_grace=1.0)
    try:
        await _journal_write(db, other.for_write(request_id="orphan"), count=1)
        running = audit.for_write(request_id="running")
        await _journal_write(db, running, count=4)
        await audit.record(AuditRecord(action="search", outcome="success"))  # starts the writer
        await audit.flush()
        assert await _chained(audit, "orphan") == []  # not older than the grace yet
        await asyncio.sleep(1.2)
        await audit.record(AuditRecord(action="search", outcome="success"))
        await audit.flush()
        [orphan] = await _chained(audit, "orphan")
        assert orphan["status"] is None
        assert await _chained(audit, "running") == []
        assert len(await _journal(db, request_id="running")) == 1

        await audit.record(
            AuditRecord(
                action="store",
                outcome="success",
                status=200,
                count=4,
                request_id="running",
                supersedes=running.release(),
            )
        )
        await audit.flush()
        [own] = await _chained(audit, "running")
        assert own["status"] == 200
        assert await _journal(db) == []
        assert (await audit.verify()).ok
    finally:
        await audit.close()
        await other.close()
        await db.close()


async def test_a_journal_row_never_fails_its_write_and_a_refused_one_is_replaced(
    fresh_database_url: str,
) -> None:
    """Text PostgreSQL cannot store (a NUL in a token's subject) is made storable before it can
    fail the write it rides with; a row the chain refuses (an action longer than its column) is
    replaced by a failure row and leaves the journal, so no sweep trips on it forever."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=0.01)
    dead = AuditLog(db)  # the process that wrote them died before its requests' rows
    try:
        write = dead.for_write(actor="dr\x00who", request_id="nul")
        await _journal_write(db, write, count=1)
        [row] = await _journal(db, request_id="nul")
        assert row["actor"] == "dr\ufffdwho"
        odd = dead.for_write(request_id="odd")
        async with db.write() as conn:
            await odd.journal(conn, AuditRecord(action="x" * 40, outcome=Outcome.SUCCESS))
        await audit.recover()
        await audit.flush()
        assert [r["actor"] for r in await _chained(audit, "nul")] == ["dr\ufffdwho"]
        [chained] = await _chained(audit, "odd")
        if not db.is_sqlite:  # SQLite does not enforce the column's length
            assert (chained["action"], chained["outcome"]) == ("unknown", "failure")
        assert await _journal(db) == []
        assert (await audit.verify()).ok
    finally:
        await audit.close()
        await dead.close()
        await db.close()


def test_the_journal_is_only_deleted_from(pg_server: str) -> None:
    """PostgreSQL refuses to change a journal row (a trigger), as it refuses to change the
    chain: a row is only ever added, then claimed."""

    async def check(url: str) -> None:
        await migrate.upgrade(url)
        db = Database(url)
        audit = AuditLog(db)
        try:
            await _journal_write(db, audit.for_write(actor="a"), count=1)
            with pytest.raises(DBAPIError, match="never changed"):
                async with db.write() as conn:
                    await conn.execute(text("UPDATE audit_journal SET actor = 'b'"))
            assert [r["actor"] for r in await _journal(db)] == ["a"]
        finally:
            await audit.close()
            await db.close()

    with pg.throwaway_database(make_url(pg_server)) as url:
        asyncio.run(check(url))

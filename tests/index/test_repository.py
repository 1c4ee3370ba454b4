"""The repository's get-or-insert of studies and series (``ensure_studies``/``ensure_series``),
on both databases: created once, read back after, and a row another transaction creates
meanwhile is read back rather than duplicated or refused; ingest's look-up of stored
instances."""

import asyncio
import time

from sqlalchemy import text

from app.dicom.instance import SeriesFields, StudyFields
from app.index.db import Database
from app.index.repository import InstanceIndex, SeriesRow, StudyRow, find_stored
from app.services.container import Services
from app.services.spool import SpooledPart
from tests.factories import make_instance


async def test_rows_are_created_once_then_read_back(db: Database) -> None:
    async with db.write() as conn:
        index = InstanceIndex(conn)
        studies = await index.ensure_studies(
            [
                (StudyFields("1.2.1", patient_id="P1", patient_name="Doe^Jane"), b"{}"),
                (StudyFields("1.2.1", patient_id="other"), b"{}"),  # the first one counts
                (StudyFields("1.2.2"), b"{}"),
            ]
        )
        assert set(studies) == {"1.2.1", "1.2.2"}
        assert studies["1.2.1"] == StudyRow(studies["1.2.1"].id, "P1", True)
        assert studies["1.2.2"] == StudyRow(studies["1.2.2"].id, None, True)
        first, second = studies["1.2.1"].id, studies["1.2.2"].id
        series = await index.ensure_series([(SeriesFields("1.2.1.1", modality="CT"), first, b"{}")])
        assert series == {"1.2.1.1": SeriesRow(series["1.2.1.1"].id, first, True)}
        name = await conn.execute(
            text("SELECT patient_name_norm FROM study WHERE id = :i"), {"i": first}
        )
        assert name.scalar_one() is not None  # the insert values were built from the fields

    async with db.write() as conn:
        index = InstanceIndex(conn)
        again = await index.ensure_studies([(StudyFields("1.2.1", patient_id="P2"), b"{}")])
        # the stored PatientID, not the one asked for: ingest compares them (STOW-10)
        assert again == {"1.2.1": StudyRow(first, "P1", False)}
        moved = await index.ensure_series(
            [(SeriesFields("1.2.1.1"), second, b"{}"), (SeriesFields("1.2.2.1"), second, b"{}")]
        )
        # a series already filed under another study keeps that study (STOW-10)
        assert moved["1.2.1.1"] == SeriesRow(series["1.2.1.1"].id, first, False)
        assert moved["1.2.2.1"] == SeriesRow(moved["1.2.2.1"].id, second, True)
        assert await index.ensure_studies([]) == {}
        assert await index.ensure_series([]) == {}


async def _until_blocked(db: Database, task: "asyncio.Task[object]", table: str) -> None:
    """Wait until ``task``'s transaction waits for the other one: on PostgreSQL its INSERT into
    ``table`` waits for the other's uncommitted row (so its look-up did not see that row), on
    SQLite it waits for the write lock."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert not task.done(), task
        if db.is_sqlite:
            await asyncio.sleep(0.05)
            return
        async with db.engine.connect() as probe:
            waiting = await probe.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE :insert"
                ),
                {"insert": f"INSERT INTO {table} %"},
            )
            if waiting.scalar_one():
                return
        await asyncio.sleep(0.02)
    raise AssertionError("the second transaction never waited for the first")


async def _study(db: Database, uid: str, patient_id: str) -> StudyRow:
    async with db.write() as conn:
        rows = await InstanceIndex(conn).ensure_studies([(StudyFields(uid, patient_id), b"{}")])
    return rows[uid]


async def _series(db: Database, uid: str, study_id: int) -> SeriesRow:
    async with db.write() as conn:
        rows = await InstanceIndex(conn).ensure_series([(SeriesFields(uid), study_id, b"{}")])
    return rows[uid]


async def test_a_row_created_meanwhile_is_read_back(db: Database) -> None:
    """Each transaction looks up, then inserts what it did not find; the row another one
    commits in between is skipped by the insert and read back (PostgreSQL), or is there by
    the time the look-up runs (SQLite, one writer at a time)."""
    async with db.write() as conn:
        won = await InstanceIndex(conn).ensure_studies([(StudyFields("1.3.1", "winner"), b"{}")])
        racing = asyncio.create_task(_study(db, "1.3.1", "loser"))
        await _until_blocked(db, racing, "study")
    assert await racing == StudyRow(won["1.3.1"].id, "winner", False)

    filed_under = await _study(db, "1.3.2", "P")
    asked_for = await _study(db, "1.3.3", "P")
    async with db.write() as conn:
        won_series = await InstanceIndex(conn).ensure_series(
            [(SeriesFields("1.3.2.1"), filed_under.id, b"{}")]
        )
        racing_series = asyncio.create_task(_series(db, "1.3.2.1", asked_for.id))
        await _until_blocked(db, racing_series, "series")
    # the study the row really has, not the one asked for
    assert await racing_series == SeriesRow(won_series["1.3.2.1"].id, filed_under.id, False)


async def test_find_stored_answers_as_find_instances_does(services: Services) -> None:
    """``find_stored`` (ingest's look-up before a batch: on PostgreSQL one statement on the
    driver pool) finds what ``InstanceIndex.find_instances`` finds, and nothing else."""
    datas = [make_instance(PatientID="P1") for _ in range(3)]
    outcomes = await asyncio.gather(
        *(services.group_commit.store(_spooled(services, data)) for data in datas)
    )
    assert all(o.stored for o in outcomes)
    wanted = [o.sop_uid or "" for o in outcomes[:2]] + ["1.2.3.4.5.6.7.8.9"]
    found = await find_stored(services.db, wanted)
    async with services.db.read() as conn:
        assert found == await InstanceIndex(conn).find_instances(wanted)
    assert sorted(found) == sorted(wanted[:2])
    ref = found[wanted[0]]
    assert (ref.sop_uid, ref.study_uid, ref.series_uid) == (
        outcomes[0].sop_uid,
        outcomes[0].study_uid,
        outcomes[0].series_uid,
    )
    assert await find_stored(services.db, []) == {}


def _spooled(services: Services, data: bytes) -> SpooledPart:
    spool = services.ingest.spool()
    spool.write(data)
    return spool.finish()

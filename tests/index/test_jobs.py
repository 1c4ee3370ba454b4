"""The jobs' SQL, on PostgreSQL and SQLite: the lease that makes one runner per job."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from app.index import jobs as table
from app.index.db import Database
from app.index.jobs import ItemRow, JobRow, Progress

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _job(job_id: str = "a" * 32, fingerprint: str = "f" * 64) -> JobRow:
    return JobRow(
        id=job_id,
        kind="pull",
        fingerprint=fingerprint,
        parameters={"source": "LEGACY", "query": {"PatientID": "P1"}},
        state="pending",
        reason=None,
        owner="admin",
        runner=None,
        lease_until=None,
        cancel_requested=False,
        progress=Progress(),
        created_at=T0,
        updated_at=T0,
        started_at=None,
        finished_at=None,
    )


async def test_one_runner_holds_the_lease_until_it_runs_out(db: Database) -> None:
    async with db.write() as conn:
        await table.create(conn, _job())
    later = T0 + timedelta(seconds=30)
    async with db.write() as conn:
        assert await table.claim(conn, "a" * 32, "h:1:x", now=T0, until=later)
        assert not await table.claim(conn, "a" * 32, "h:2:y", now=T0, until=later)
        # the holder known dead is taken over before its lease runs out
        assert await table.claim(conn, "a" * 32, "h:3:z", now=T0, until=later, dead="h:1:x")
    async with db.write() as conn:
        progress = Progress(units_total=3, instances_stored=7, bytes_stored=1 << 40)
        assert (
            await table.heartbeat(conn, "a" * 32, "h:3:z", now=T0, until=later, progress=progress)
            is False
        )
        assert (
            await table.heartbeat(conn, "a" * 32, "h:1:x", now=T0, until=later, progress=progress)
            is None
        )
        assert await table.request_cancel(conn, "a" * 32, now=T0)
        assert await table.heartbeat(
            conn, "a" * 32, "h:3:z", now=T0, until=later, progress=progress
        )
    async with db.read() as conn:
        row = await table.get(conn, "a" * 32)
    assert row is not None
    assert (row.state, row.runner, row.lease_until, row.cancel_requested) == (
        "running",
        "h:3:z",
        later,
        True,
    )
    assert row.progress == progress
    assert row.started_at == T0
    # the lease ran out: anyone takes it
    async with db.write() as conn:
        assert await table.claim(
            conn,
            "a" * 32,
            "h:4:w",
            now=later + timedelta(seconds=1),
            until=later + timedelta(minutes=1),
        )
        assert not await table.release(
            conn, "a" * 32, "h:3:z", state="completed", reason=None, now=later, progress=Progress()
        )
        assert await table.release(
            conn,
            "a" * 32,
            "h:4:w",
            state="failed",
            reason="2 of 3 studies failed",
            now=later,
            progress=progress,
        )
    async with db.read() as conn:
        row = await table.get(conn, "a" * 32)
    assert row is not None
    assert (row.state, row.reason, row.runner, row.finished_at) == (
        "failed",
        "2 of 3 studies failed",
        None,
        later,
    )
    assert row.parameters == {"source": "LEGACY", "query": {"PatientID": "P1"}}


async def test_the_newest_job_of_a_request_and_pages(db: Database) -> None:
    async with db.write() as conn:
        await table.create(conn, _job("1" * 32))
        await table.create(conn, replace(_job("2" * 32), created_at=T0 + timedelta(days=1)))
        await table.create(conn, _job("3" * 32, fingerprint="e" * 64))
    async with db.read() as conn:
        newest = await table.latest(conn, "f" * 64)
        assert newest is not None
        assert newest.id == "2" * 32
        assert await table.latest(conn, "0" * 64) is None
        rows, total = await table.page(conn, limit=2, offset=0)
        assert total == 3
        assert rows[0].id == "2" * 32


async def test_items_keep_their_state_when_added_again(db: Database) -> None:
    async with db.write() as conn:
        await table.create(conn, _job())
        await table.add_items(
            conn,
            "a" * 32,
            [ItemRow(f"1.2.{n}", f"1.2.{n}", None, "P1", "pending", 3) for n in range(3)],
            now=T0,
        )
        await table.set_item(
            conn,
            "a" * 32,
            ItemRow("1.2.1", "1.2.1", None, "P1", "done", 3, stored=3, bytes=3000),
            now=T0,
        )
        await table.add_items(
            conn,
            "a" * 32,
            [ItemRow(f"1.2.{n}", f"1.2.{n}", None, "P1", "pending", 3) for n in range(5)],
            now=T0,
        )
    async with db.read() as conn:
        items = await table.items(conn, "a" * 32)
        done = await table.items(conn, "a" * 32, states=["done"])
    assert [(i.key, i.state) for i in items] == [
        ("1.2.0", "pending"),
        ("1.2.1", "done"),
        ("1.2.2", "pending"),
        ("1.2.3", "pending"),
        ("1.2.4", "pending"),
    ]
    assert done == [ItemRow("1.2.1", "1.2.1", None, "P1", "done", 3, stored=3, bytes=3000)]

"""gc, fsck and retention on a schedule (issue 23 point 6): one process of many runs each job
per interval (a lease in the index), the findings reach the metrics. PostgreSQL and SQLite."""

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY

from app.index.db import Database
from app.index.leases import claim, extend, leases
from app.services.container import Services
from app.services.housekeeping import HOLD, Housekeeping, HousekeepingPlan
from app.services.maintenance import MaintenanceService
from app.services.retention import RetentionRule
from tests.factories import make_instance, multipart, stow_headers

START = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def fresh_leases(services: Services) -> Services:
    from sqlalchemy import delete

    from app.index.models import Lease

    async with services.db.write() as conn:
        await conn.execute(delete(Lease))
    return services


def _keeper(services: Services, plan: HousekeepingPlan, holder: str, clock: Clock) -> Housekeeping:
    return Housekeeping(
        services.db, services.maintenance, services.retention, plan, holder=holder, clock=clock
    )


async def test_one_of_many_processes_runs_each_job_per_interval(fresh_leases: Services) -> None:
    services = fresh_leases
    clock = Clock()
    plan = HousekeepingPlan(gc_interval=timedelta(hours=1), fsck_interval=timedelta(hours=6))
    keepers = [_keeper(services, plan, f"worker-{i}", clock) for i in range(4)]
    runs = _value("lightbox_housekeeping_runs_total", job="fsck", outcome="success")

    ran = await asyncio.gather(*(k.run_due() for k in keepers))
    assert sorted(job for jobs in ran for job in jobs) == ["fsck", "gc"]  # each once in all
    assert _value("lightbox_housekeeping_runs_total", job="fsck", outcome="success") == runs + 1
    assert _value("lightbox_fsck_problems", kind="missing_blobs") == 0

    clock.now += timedelta(minutes=59)
    assert [await k.run_due() for k in keepers] == [[], [], [], []]
    clock.now += timedelta(minutes=2)  # an hour after gc ended: gc is due, fsck is not
    ran = await asyncio.gather(*(k.run_due() for k in keepers))
    assert sorted(job for jobs in ran for job in jobs) == ["gc"]

    async with services.db.read() as conn:
        rows = {row["name"]: row for row in await leases(conn)}
    assert rows["fsck"]["expires_at"] == START + timedelta(hours=6)
    assert rows["fsck"]["finished_at"] == START
    assert rows["fsck"]["detail"].startswith("checked 0 rows and 0 blobs")
    assert rows["gc"]["holder"].startswith("worker-")


async def test_findings_reach_the_metrics(
    fresh_leases: Services, client: httpx.AsyncClient
) -> None:
    services = fresh_leases
    stored = await client.post(
        "/dicom-web/studies",
        content=multipart([make_instance(StudyDate="20000101") for _ in range(2)]),
        headers=stow_headers(),
    )
    assert stored.status_code == 200
    orphan = services.maintenance.store
    await orphan.put_bytes("dicom/00/11/orphan.0000000000000000.dcm", b"left by a crash")
    clock = Clock()
    plan = HousekeepingPlan(
        gc_interval=timedelta(hours=1),
        gc_grace=timedelta(0),
        fsck_interval=timedelta(hours=1),
        retention_interval=timedelta(hours=24),
        retention_rules=(RetentionRule(3650),),
    )
    removed = _value("lightbox_gc_removed_total", what="blobs")
    refused = _value("lightbox_housekeeping_runs_total", job="retention", outcome="refused")
    keeper = _keeper(services, plan, "solo", clock)
    assert await keeper.run_due() == ["gc", "fsck", "retention"]
    # gc ran first: the orphan is gone before fsck looks
    assert _value("lightbox_gc_removed_total", what="blobs") == removed + 1
    assert _value("lightbox_fsck_problems", kind="unreferenced_blobs") == 0
    assert _value("lightbox_fsck_rows_checked") == 2
    # both studies are older than the rule: all of them, so a scheduled run refuses
    assert (
        _value("lightbox_housekeeping_runs_total", job="retention", outcome="refused")
        == refused + 1
    )
    assert _value("lightbox_housekeeping_last_success_timestamp_seconds", job="fsck") == (
        START.timestamp()
    )


async def test_a_failed_job_is_retried_sooner(fresh_leases: Services) -> None:
    services = fresh_leases
    # fsck over an index that does not answer (nothing listens on port 1)
    unreachable = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none", pool_size=1)
    keeper = Housekeeping(
        services.db,
        MaintenanceService(unreachable, services.store),
        services.retention,
        HousekeepingPlan(fsck_interval=timedelta(days=1)),
        holder="solo",
        clock=Clock(),
    )
    failures = _value("lightbox_housekeeping_runs_total", job="fsck", outcome="failure")
    try:
        assert await keeper.run_due() == ["fsck"]
    finally:
        await unreachable.close()
    assert _value("lightbox_housekeeping_runs_total", job="fsck", outcome="failure") == failures + 1
    async with services.db.read() as conn:
        (row,) = await leases(conn)
    assert row["expires_at"] == START + timedelta(minutes=15)
    assert row["detail"].startswith("failed: ")


@pytest.mark.usefixtures("fresh_leases")
async def test_lease_claims_are_exclusive(database_url: str) -> None:
    """Separate engines (as separate processes have) claiming at once: one wins."""
    dbs = [Database(database_url, pool_size=1) for _ in range(4)]

    async def attempt(db: Database, holder: str) -> bool:
        async with db.write() as conn:
            return await claim(conn, "job", holder, START, START + HOLD)

    try:
        won = await asyncio.gather(*(attempt(db, f"p{i}") for i, db in enumerate(dbs)))
        assert sorted(won) == [False, False, False, True]
        winner = f"p{won.index(True)}"
        async with dbs[0].write() as conn:
            assert await extend(conn, "job", winner, START + 2 * HOLD)
            assert not await extend(conn, "job", "someone-else", START + 2 * HOLD)
        # expired: the next claim after the hold wins
        assert not await attempt(dbs[1], "late")
        async with dbs[1].write() as conn:
            assert await claim(conn, "job", "late", START + 2 * HOLD, START + 3 * HOLD)
    finally:
        for db in dbs:
            await db.close()


def test_plan_from_settings() -> None:
    from app.config import Settings
    from app.services.container import housekeeping_plan

    settings = Settings.model_validate(
        {
            "maintenance": {"gc_interval_hours": 2, "fsck_interval_hours": 0},
            "retention": {"interval_hours": 24, "rules": []},
        }
    )
    plan = housekeeping_plan(settings)
    # no rules: no retention run, whatever the interval
    assert plan.intervals() == {"gc": timedelta(hours=2)}
    assert not housekeeping_plan(Settings.model_validate({})).active


async def test_nothing_scheduled_runs_nothing(fresh_leases: Services) -> None:
    keeper = _keeper(fresh_leases, HousekeepingPlan(), "solo", Clock())
    async with keeper.running():
        assert await keeper.run_due() == []

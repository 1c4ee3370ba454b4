"""Jobs: leased to one runner, interrupted when the runner dies, cancelled from any replica."""

import asyncio
import socket
import sys
from datetime import UTC, datetime, timedelta

import pytest

from app.errors import Conflict, NotFound
from app.index import jobs as table
from app.services.container import Services
from app.services.jobs import JobService, JobState


async def test_a_lease_runs_a_job_to_its_end(services: Services) -> None:
    jobs = services.jobs
    job = await jobs.create("pull", {"source": "X"}, owner="admin")
    assert job.state is JobState.PENDING
    assert (await jobs.find("pull", {"source": "X"})) == job
    assert await jobs.find("pull", {"source": "Y"}) is None
    lease = await jobs.acquire(job.id)
    with pytest.raises(Conflict, match=f"the job {job.id} is running on "):
        await jobs.acquire(job.id)
    async with lease:
        assert (await jobs.get(job.id)).state is JobState.RUNNING
        lease.progress.units_total = 5
        lease.finish(JobState.FAILED, "1 of 5 studies failed")
    ended = await jobs.get(job.id)
    assert (ended.state, ended.row.reason, ended.progress.units_total) == (
        JobState.FAILED,
        "1 of 5 studies failed",
        5,
    )
    assert ended.row.runner is None
    with pytest.raises(Conflict, match="has ended already"):
        await jobs.cancel(job.id)
    with pytest.raises(NotFound, match="no job 'nope'"):
        await jobs.get("nope")
    with pytest.raises(NotFound):
        await jobs.get("0" * 32)


async def test_a_stopped_runner_leaves_its_job_interrupted(services: Services) -> None:
    job = await services.jobs.create("pull", {}, owner=None)
    lease = await services.jobs.acquire(job.id)

    async def work() -> None:
        async with lease:
            await asyncio.sleep(60)

    task = asyncio.create_task(work())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stopped = await services.jobs.get(job.id)
    assert stopped.state is JobState.INTERRUPTED
    assert "run it again to resume" in (stopped.row.reason or "")
    # and it can be run again at once
    async with await services.jobs.acquire(job.id):
        pass
    assert (await services.jobs.get(job.id)).state is JobState.COMPLETED


async def test_a_dead_runner_is_seen_and_taken_over(services: Services) -> None:
    job = await services.jobs.create("pull", {}, owner=None)
    now = datetime.now(UTC)
    # another machine's runner, whose lease ran out: interrupted
    async with services.db.write() as conn:
        await table.claim(
            conn,
            job.id,
            "elsewhere:1:x",
            now=now - timedelta(minutes=2),
            until=now - timedelta(minutes=1),
        )
    assert (await services.jobs.get(job.id)).state is JobState.INTERRUPTED
    # a runner of this machine whose process is gone: taken over before its lease runs out
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()
    async with services.db.write() as conn:
        await table.claim(
            conn,
            job.id,
            f"{socket.gethostname()}:{gone.pid}:x",
            now=now,
            until=now + timedelta(hours=1),
            dead="elsewhere:1:x",
        )
    assert (await services.jobs.get(job.id)).state is JobState.RUNNING
    async with await services.jobs.acquire(job.id):
        pass
    # a live runner elsewhere is not
    async with services.db.write() as conn:
        await table.claim(conn, job.id, "elsewhere:2:y", now=now, until=now + timedelta(hours=1))
    with pytest.raises(Conflict, match="running on elsewhere:2:y, lease until"):
        await services.jobs.acquire(job.id)


async def test_cancel_from_another_replica_reaches_the_runner(services: Services) -> None:
    runner = JobService(services.db, lease_seconds=1.2)  # heartbeat every 0.2 s
    other = JobService(services.db)  # another replica: it does not hold the lease
    job = await runner.create("pull", {}, owner=None)
    lease = await runner.acquire(job.id)
    async with lease:
        cancelled = await other.cancel(job.id)
        assert cancelled.state is JobState.RUNNING
        assert cancelled.row.cancel_requested
        await asyncio.wait_for(lease.cancelled.wait(), 5)
        lease.finish(JobState.CANCELLED, "cancelled on request")
    assert (await other.get(job.id)).state is JobState.CANCELLED
    # a job nobody runs is cancelled at once
    idle = await other.create("pull", {"n": 2}, owner=None)
    assert (await other.cancel(idle.id)).state is JobState.CANCELLED


async def test_a_lost_lease_stops_the_runner_without_writing(services: Services) -> None:
    runner = JobService(services.db, lease_seconds=1.2)
    job = await runner.create("pull", {}, owner=None)
    lease = await runner.acquire(job.id)
    async with lease:
        now = datetime.now(UTC)
        async with services.db.write() as conn:  # taken over meanwhile (it stalled)
            await table.claim(
                conn,
                job.id,
                "thief:1:z",
                now=now,
                until=now + timedelta(hours=1),
                dead=lease.runner,
            )
        await asyncio.wait_for(lease.cancelled.wait(), 5)
        assert lease.lost
    row = (await runner.get(job.id)).row
    assert (row.state, row.runner) == ("running", "thief:1:z")

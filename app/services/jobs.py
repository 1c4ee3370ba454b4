"""Jobs: long-running administrative tasks kept in the index, so any replica answers for any job.

A job (today only ``pull``, :mod:`app.services.pull`) is a row of the index with its parameters,
state, progress and units of work (:mod:`app.index.jobs`). Whoever runs it holds a *lease*
(:class:`JobLease`): the runner's name and a time until which the job is its own, renewed by a
heartbeat that also writes the progress and reads a cancel asked on any replica. So:

* a replica asked about a job reads the row; there is no per-process job table (Orthanc keeps
  jobs per process, and its users behind a load balancer get 404s);
* a runner that dies (killed, its machine lost) stops renewing: once the lease has run out the
  job is *interrupted*, and running it again (``lightbox pull`` with the same request, or
  ``POST /api/jobs/{id}/resume``) takes the lease over and continues where it stopped. A runner
  of this very machine whose process is gone is taken over at once, without waiting for its
  lease to run out;
* a cancel is a flag: the runner sees it at its next heartbeat and stops (``cancelled``); a job
  nobody runs is cancelled at once.

States: ``pending`` (made, never run), ``running``, ``completed``, ``failed`` (with a reason),
``cancelled``, ``interrupted`` (stopped before its end: by a signal, a shutdown, or a lease that
ran out).
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from app.errors import Conflict, LightboxError, NotFound
from app.index import jobs as table
from app.index.db import Database, DriverError
from app.index.jobs import ItemRow, JobRow, Progress

__all__ = ["ItemRow", "Job", "JobLease", "JobService", "JobState", "Progress"]

log = logging.getLogger(__name__)


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


#: the states of a job that ran to an end (an interrupted one did not)
FINISHED: Final = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
_JOB_ID: Final = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class Job:
    """A job as a reader sees it: its row, with the state a lease that ran out implies."""

    row: JobRow
    state: JobState

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def parameters(self) -> dict[str, Any]:
        return self.row.parameters

    @property
    def progress(self) -> Progress:
        return self.row.progress

    @classmethod
    def of(cls, row: JobRow, now: datetime) -> "Job":
        state = JobState(row.state)
        if state is JobState.RUNNING and (row.lease_until is None or row.lease_until < now):
            state = JobState.INTERRUPTED  # its runner stopped renewing: it died
        return cls(row, state)


def fingerprint(kind: str, parameters: dict[str, Any]) -> str:
    """The same request (kind and canonical parameters) gives the same fingerprint."""
    canonical = json.dumps([kind, parameters], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def runner_name() -> str:
    """A lease holder's name: ``host:pid:nonce`` (the nonce tells two leases of one process
    apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_here(runner: str | None) -> bool:
    """Whether ``runner`` ran on this machine in a process that is gone."""
    if runner is None:
        return False
    parts = runner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False  # this process: a lease of a task still running here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class JobService:
    """Creates, reads and cancels jobs, and leases them to the process that runs them."""

    def __init__(self, db: Database, *, lease_seconds: float = 30.0) -> None:
        self._db = db
        self.lease_seconds = max(1.0, lease_seconds)
        #: how often a runner renews its lease, writes its progress and looks for a cancel
        self.heartbeat_seconds = max(0.2, min(5.0, self.lease_seconds / 6))
        self._tasks: set[asyncio.Task[Any]] = set()
        #: leases held by this process, by job: a cancel here needs no heartbeat to be seen
        self._held: dict[str, JobLease] = {}

    async def create(self, kind: str, parameters: dict[str, Any], *, owner: str | None) -> Job:
        now = datetime.now(UTC)
        row = JobRow(
            id=uuid.uuid4().hex,
            kind=kind,
            fingerprint=fingerprint(kind, parameters),
            parameters=parameters,
            state=JobState.PENDING.value,
            reason=None,
            owner=owner,
            runner=None,
            lease_until=None,
            cancel_requested=False,
            progress=Progress(),
            created_at=now,
            updated_at=now,
            started_at=None,
            finished_at=None,
        )
        async with self._db.write() as conn:
            await table.create(conn, row)
        return Job(row, JobState.PENDING)

    async def find(self, kind: str, parameters: dict[str, Any]) -> Job | None:
        """The newest job made for the same request, if any."""
        async with self._db.read() as conn:
            row = await table.latest(conn, fingerprint(kind, parameters))
        return Job.of(row, datetime.now(UTC)) if row is not None else None

    async def get(self, job_id: str) -> Job:
        """The job, or :class:`~app.errors.NotFound`."""
        row = None
        if _JOB_ID.fullmatch(job_id):
            async with self._db.read() as conn:
                row = await table.get(conn, job_id)
        if row is None:
            raise NotFound(f"no job {job_id[:64]!r}")
        return Job.of(row, datetime.now(UTC))

    async def page(self, *, limit: int, offset: int) -> tuple[list[Job], int]:
        async with self._db.read() as conn:
            rows, total = await table.page(conn, limit=limit, offset=offset)
        now = datetime.now(UTC)
        return [Job.of(row, now) for row in rows], total

    async def items(
        self, job_id: str, *, states: Sequence[str] | None = None, limit: int | None = None
    ) -> list[ItemRow]:
        async with self._db.read() as conn:
            return await table.items(conn, job_id, states=states, limit=limit)

    async def add_items(self, job_id: str, items: Sequence[ItemRow]) -> None:
        async with self._db.write() as conn:
            await table.add_items(conn, job_id, items, now=datetime.now(UTC))

    async def set_item(self, job_id: str, item: ItemRow) -> None:
        async with self._db.write() as conn:
            await table.set_item(conn, job_id, item, now=datetime.now(UTC))

    async def cancel(self, job_id: str) -> Job:
        """Stop a job: a running one at its runner's next heartbeat (at once in this process);
        one nobody runs (pending, interrupted) at once. 409 when it has ended already."""
        job = await self.get(job_id)
        if job.state in FINISHED:
            raise Conflict(f"the job {job_id} has ended already ({job.state.value})")
        now = datetime.now(UTC)
        held = self._held.get(job_id)
        if held is not None:
            held.cancel()
        async with self._db.write() as conn:
            if job.state is JobState.RUNNING:
                await table.request_cancel(conn, job_id, now=now)
            else:
                # unless a runner took it over since it was read (then ask that one)
                done = await table.set_state(
                    conn,
                    job_id,
                    state=JobState.CANCELLED.value,
                    reason="cancelled before it ran to its end",
                    now=now,
                    unless_leased_after=now,
                )
                if not done:
                    await table.request_cancel(conn, job_id, now=now)
        return await self.get(job_id)

    async def acquire(self, job_id: str) -> "JobLease":
        """The job's lease for this process (the job becomes running), or
        :class:`~app.errors.Conflict` naming the runner that holds it."""
        job = await self.get(job_id)
        runner = runner_name()
        now = datetime.now(UTC)
        dead = job.row.runner if _dead_here(job.row.runner) else None
        async with self._db.write() as conn:
            claimed = await table.claim(
                conn,
                job_id,
                runner,
                now=now,
                until=now + timedelta(seconds=self.lease_seconds),
                dead=dead,
            )
        if not claimed:
            current = await self.get(job_id)
            until = current.row.lease_until
            left = f", lease until {until.isoformat(timespec='seconds')}" if until else ""
            raise Conflict(f"the job {job_id} is running on {current.row.runner}{left}")
        lease = JobLease(self, await self.get(job_id), runner)
        self._held[job_id] = lease
        return lease

    def spawn(self, work: Coroutine[Any, Any, Any], *, name: str) -> None:
        """Run ``work`` in the background of this process (cancelled when the services close)."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background job %s failed", task.get_name(), exc_info=task.exception())

    async def wait(self) -> None:
        """Wait for the background jobs of this process (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop the background jobs of this process: they end interrupted, to be resumed."""
        for task in list(self._tasks):
            task.cancel()
        await self.wait()

    # --- the lease's side (called by JobLease) ---

    async def _beat(self, lease: "JobLease") -> bool | None:
        now = datetime.now(UTC)
        async with self._db.write() as conn:
            return await table.heartbeat(
                conn,
                lease.job.id,
                lease.runner,
                now=now,
                until=now + timedelta(seconds=self.lease_seconds),
                progress=lease.progress,
            )

    async def _release(self, lease: "JobLease", state: JobState, reason: str | None) -> None:
        self._held.pop(lease.job.id, None)
        async with self._db.write() as conn:
            released = await table.release(
                conn,
                lease.job.id,
                lease.runner,
                state=state.value,
                reason=reason,
                now=datetime.now(UTC),
                progress=lease.progress,
            )
        if not released:
            log.warning("job %s: the lease was taken over before it ended", lease.job.id)


class JobLease:
    """A running job's lease (``async with lease:``): a heartbeat renews it while the block
    runs; leaving the block ends it with the state :meth:`finish` set, or ``interrupted``
    (the block was cancelled), ``cancelled`` (a cancel was asked), ``failed`` (an error)."""

    def __init__(self, service: JobService, job: Job, runner: str) -> None:
        self._service = service
        self.job = job
        self.runner = runner
        #: the runner's counters, written with each heartbeat and at the end
        self.progress = Progress(**job.progress.values())
        #: set when a cancel is asked (here or on another replica) or the lease is lost
        self.cancelled = asyncio.Event()
        self.lost = False
        self._final: tuple[JobState, str | None] | None = None
        self._heart: asyncio.Task[None] | None = None
        #: called after each heartbeat (a progress display)
        self.on_beat: Callable[[], None] | None = None

    def cancel(self) -> None:
        self.cancelled.set()

    def finish(self, state: JobState, reason: str | None = None) -> None:
        """The state the job ends in when the block is left normally."""
        self._final = (state, reason)

    async def __aenter__(self) -> "JobLease":
        self._heart = asyncio.get_running_loop().create_task(
            self._beating(), name=f"job-heartbeat-{self.job.id}"
        )
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: Any, _tb: Any) -> None:
        if self._heart is not None:
            self._heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heart
        if self.lost:
            return  # another runner holds it now: nothing of ours to write
        if exc is None:
            state, reason = self._final or (JobState.COMPLETED, None)
        elif self.cancelled.is_set():
            state, reason = JobState.CANCELLED, "cancelled"
        elif isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | GeneratorExit):
            state, reason = JobState.INTERRUPTED, "stopped before its end (run it again to resume)"
        elif isinstance(exc, LightboxError):
            state, reason = JobState.FAILED, exc.message
        else:
            state, reason = JobState.FAILED, f"{type(exc).__name__}: {exc}"
        # shielded: a cancelled runner still records how its job ended
        await asyncio.shield(self._service._release(self, state, reason))

    async def _beating(self) -> None:
        while True:
            await asyncio.sleep(self._service.heartbeat_seconds)
            try:
                answer = await self._service._beat(self)
            except (DriverError, OSError) as exc:
                log.warning("job %s: heartbeat failed (%s); retrying", self.job.id, exc)
                continue
            if answer is None:
                log.error("job %s: lease lost to another runner; stopping", self.job.id)
                self.lost = True
                self.cancelled.set()
                return
            if answer:
                self.cancelled.set()
            if self.on_beat is not None:
                self.on_beat()

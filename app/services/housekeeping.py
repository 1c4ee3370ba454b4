"""gc, fsck and retention on a schedule inside ``lightbox serve`` (issue 23, point 6).

Every process that serves runs a :class:`Housekeeping` loop, but a job runs in one of them
per interval: before running it, a process claims the job's lease in the index
(:mod:`app.index.leases`), which only one of all the workers and replicas gets. The holder
keeps the lease while the job runs (renewed every :data:`HOLD` / 3; a process that dies
mid-job lets it expire, and another takes the job up within :data:`HOLD`), and at the end
sets when it is next due: ``interval`` after the run ended (after a failure, sooner:
:data:`RETRY`). The findings go to the metrics (``lightbox_fsck_problems``,
``lightbox_gc_removed_total``, ``lightbox_retention_deleted_studies_total``,
``lightbox_housekeeping_runs_total``) and to the lease row (``detail``), and the log.

A scheduled retention run is never confirmed: one that would delete more than
``retention.max_fraction`` of the archive, or all of it, is refused (and counted so) until an
administrator runs it by hand with ``--yes`` or changes the rules.
"""

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from app.index.db import Database
from app.index.leases import claim, due, extend, finish
from app.services.background import in_background
from app.services.maintenance import MaintenanceService
from app.services.metrics import record_fsck, record_gc, record_job
from app.services.metrics.housekeeping import JobOutcome
from app.services.retention import RetentionRule, RetentionService

__all__ = ["HOLD", "RETRY", "Housekeeping", "HousekeepingPlan", "JobResult", "holder_id"]

log = logging.getLogger(__name__)

#: how long a running job holds its lease without renewal: a process that died mid-job gives
#: the job up this long after its last renewal
HOLD: Final = timedelta(minutes=10)
#: how soon a job that failed is tried again (unless its interval is shorter)
RETRY: Final = timedelta(minutes=15)
#: the actor of scheduled retention runs in the audit trail
RETENTION_ACTOR: Final = "system:retention"


@dataclass(frozen=True, slots=True)
class HousekeepingPlan:
    """What runs and how often (``timedelta(0)``: never)."""

    gc_interval: timedelta = timedelta(0)
    gc_grace: timedelta = timedelta(hours=1)
    fsck_interval: timedelta = timedelta(0)
    fsck_verify_hashes: bool = False
    retention_interval: timedelta = timedelta(0)
    retention_rules: tuple[RetentionRule, ...] = ()

    def intervals(self) -> dict[str, timedelta]:
        """The jobs to schedule, by name."""
        jobs = {
            "gc": self.gc_interval,
            "fsck": self.fsck_interval,
            "retention": self.retention_interval if self.retention_rules else timedelta(0),
        }
        return {name: interval for name, interval in jobs.items() if interval > timedelta(0)}

    @property
    def active(self) -> bool:
        return bool(self.intervals())


@dataclass(frozen=True, slots=True)
class JobResult:
    """How a job ended, and what it did in words."""

    outcome: JobOutcome
    detail: str


def holder_id() -> str:
    """This process, as a lease holder: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"


class Housekeeping:
    """The scheduled jobs of one process."""

    def __init__(
        self,
        db: Database,
        maintenance: MaintenanceService,
        retention: RetentionService,
        plan: HousekeepingPlan,
        *,
        holder: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._maintenance = maintenance
        self._retention = retention
        self.plan = plan
        self.holder = holder or holder_id()
        self._clock = clock
        self._jobs: dict[str, Callable[[], Awaitable[JobResult]]] = {
            "gc": self._gc,
            "fsck": self._fsck,
            "retention": self._retention_run,
        }

    async def run_due(self) -> list[str]:
        """Run each job that is due and whose lease this process gets; the jobs it ran."""
        ran = []
        for name, interval in self.plan.intervals().items():
            if await self._claim(name):
                await self._run(name, interval)
                ran.append(name)
        return ran

    async def run_forever(self, tick: float | None = None) -> None:
        """Look for due jobs every ``tick`` seconds (default: a tenth of the shortest interval,
        between 1 s and a minute) until cancelled."""
        intervals = self.plan.intervals().values()
        if not intervals:
            return
        if tick is None:
            tick = min(60.0, max(1.0, min(intervals).total_seconds() / 10))
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the index is unreachable: try again at the next tick
                log.warning("housekeeping could not check its jobs: %s", exc)
            await asyncio.sleep(tick)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run :meth:`run_forever` in the background while the block runs."""
        if not self.plan.active:
            yield
            return
        async with in_background(self.run_forever(), name="housekeeping"):
            yield

    async def _claim(self, name: str) -> bool:
        now = self._clock()
        async with self._db.read() as conn:
            if not await due(conn, name, now):
                return False
        async with self._db.write() as conn:
            return await claim(conn, name, self.holder, now, now + HOLD)

    async def _run(self, name: str, interval: timedelta) -> None:
        started = time.monotonic()
        async with in_background(self._renew(name)):
            try:
                result = await self._jobs[name]()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("housekeeping job %s failed", name)
                result = JobResult("failure", f"failed: {type(exc).__name__}: {exc}")
        seconds = time.monotonic() - started
        ended = self._clock()
        record_job(name, result.outcome, seconds, ended.timestamp())
        wait = interval if result.outcome != "failure" else min(interval, RETRY)
        try:
            async with self._db.write() as conn:
                await finish(conn, name, self.holder, ended, ended + wait, result.detail)
        except Exception as exc:  # the lease then expires after HOLD: a run sooner, no harm
            log.warning("housekeeping could not record the end of %s: %s", name, exc)
        log.info("housekeeping %s: %s (%.1f s)", name, result.detail, seconds)

    async def _renew(self, name: str) -> None:
        while True:
            await asyncio.sleep(HOLD.total_seconds() / 3)
            try:
                async with self._db.write() as conn:
                    if not await extend(conn, name, self.holder, self._clock() + HOLD):
                        log.warning("housekeeping lost the lease of %s", name)
                        return
            except Exception as exc:
                log.warning("housekeeping could not renew the lease of %s: %s", name, exc)

    # --- the jobs ------------------------------------------------------------------------------

    async def _gc(self) -> JobResult:
        report = await self._maintenance.gc(grace=self.plan.gc_grace)
        record_gc(len(report.removed), report.temp_files_removed)
        return JobResult(
            "success",
            f"scanned {report.scanned} blobs, removed {len(report.removed)} unreferenced and "
            f"{report.temp_files_removed} stale temp files",
        )

    async def _fsck(self) -> JobResult:
        report = await self._maintenance.fsck(verify_hashes=self.plan.fsck_verify_hashes)
        problems = {
            "missing_blobs": len(report.missing_blobs),
            "size_mismatches": len(report.size_mismatches),
            "hash_mismatches": len(report.hash_mismatches),
            "unreferenced_blobs": len(report.unreferenced_blobs),
        }
        record_fsck(report.rows_checked, **problems)
        found = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in problems.items())
        if not report.ok:
            log.warning("fsck found problems: %s (run lightbox fsck for the list)", found)
        return JobResult(
            "success",
            f"checked {report.rows_checked} rows and {report.blobs_checked} blobs: {found}",
        )

    async def _retention_run(self) -> JobResult:
        outcome = await self._retention.run(self.plan.retention_rules, actor=RETENTION_ACTOR)
        if outcome.refused is not None:
            return JobResult("refused", f"refused: {outcome.refused}")
        return JobResult(
            "success" if not outcome.failed else "failure",
            f"deleted {outcome.deleted_studies} studies ({outcome.deleted_instances} instances)"
            f", {len(outcome.failed)} failed",
        )

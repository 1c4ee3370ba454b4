"""What a process is doing, sampled every few seconds rather than counted per request: the
audit queue's depth and its writer's lag, the database pools' connections; which processes
serve; and the exposition of all of it.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final, Protocol

import anyio.to_thread
from prometheus_client import Gauge

from app import telemetry
from app.services.background import in_background

__all__ = [
    "AuditSource",
    "PoolSource",
    "ProcessMetrics",
    "exposition",
    "process_started",
    "sample",
    "sampling",
]

_QUEUE: Final = Gauge(
    "lightbox_audit_queue_depth",
    "audit events waiting for the writer (requests wait once a process holds queue_size)",
    multiprocess_mode="livesum",
)
_LAG: Final = Gauge(
    "lightbox_audit_writer_lag_seconds",
    "how long events have waited since the writer last committed a batch (0: none waiting)",
    multiprocess_mode="livemax",
)
_POOL: Final = Gauge(
    "lightbox_db_pool_connections",
    "database connections by pool (sqlalchemy: transactions; driver: PostgreSQL look-ups) "
    "and state (in_use, idle, overflow), summed over the live processes",
    ("pool", "state"),
    multiprocess_mode="livesum",
)
_WORKERS: Final = Gauge(
    "lightbox_worker_processes",
    "processes serving HTTP (a dead worker is dropped when it ends)",
    multiprocess_mode="livesum",
)
_BUILD: Final = Gauge(
    "lightbox_build_info", "the running version (value 1)", ("version",), multiprocess_mode="max"
)
#: seconds between two samples (a scrape also samples the process it lands on)
SAMPLE_SECONDS: Final = 5.0


class AuditSource(Protocol):
    """What the audit log tells about its queue (``app.services.audit.AuditLog``)."""

    @property
    def queue_depth(self) -> int: ...

    def lag_seconds(self) -> float: ...


class PoolSource(Protocol):
    """What the database tells about its pools (``app.index.db.Database``)."""

    def pool_status(self) -> dict[tuple[str, str], int]: ...


def sample(audit: AuditSource, db: PoolSource) -> None:
    """Set the sampled gauges of this process."""
    _QUEUE.set(audit.queue_depth)
    _LAG.set(audit.lag_seconds())
    for (pool, state), count in db.pool_status().items():
        _POOL.labels(pool, state).set(count)


@contextlib.asynccontextmanager
async def sampling(
    audit: AuditSource, db: PoolSource, interval: float = SAMPLE_SECONDS
) -> AsyncIterator[None]:
    """Sample every ``interval`` seconds while the block runs."""

    async def loop() -> None:
        while True:
            sample(audit, db)
            await asyncio.sleep(interval)

    async with in_background(loop(), name="metrics-sampler"):
        yield


def process_started(version: str) -> None:
    """Count this process among those serving HTTP."""
    _WORKERS.set(1)
    _BUILD.labels(version).set(1)


async def exposition() -> tuple[bytes, str]:
    """The metrics of every process of the run, and their media type."""
    return await anyio.to_thread.run_sync(telemetry.exposition), telemetry.CONTENT_TYPE


class ProcessMetrics:
    """The sampled metrics of one process's services, and the run's exposition."""

    def __init__(self, audit: AuditSource, db: PoolSource) -> None:
        self._audit = audit
        self._db = db

    def sampling(
        self, interval: float = SAMPLE_SECONDS
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Sample this process every ``interval`` seconds while the block runs."""
        return sampling(self._audit, self._db, interval)

    async def exposition(self) -> tuple[bytes, str]:
        """Every process's metrics (this one's sampled now), and their media type."""
        sample(self._audit, self._db)
        return await exposition()

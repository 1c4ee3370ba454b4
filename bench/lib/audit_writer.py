"""CPU cost of the audit writer per event (issue 6): ``AuditLog._write`` on batches of a given
size, on a throwaway PostgreSQL database (or SQLite with ``--sqlite``), ``time.process_time()``,
and on PostgreSQL also the CPU of the writer's server process (read from ``/proc``, so the
server must run on this machine).

    .venv/bin/python bench/run.py overhead audit-writer --batch 1 15 100 [--sqlite]

Events are frames retrievals (study, series and instance named, so the PatientID is looked up).
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: app, tests

from sqlalchemy.engine import make_url
from wrk_rounds import process_cpu_seconds

from app.index import migrate
from app.index.db import Database
from app.services.audit import AuditLog, AuditRecord
from tests import pg


def event() -> AuditRecord:
    return AuditRecord(
        action="frames",
        outcome="success",
        status=200,
        actor="bench",
        source="127.0.0.1",
        study_uid="1.2.826.0.1.3680043.8.498.12345678901234567890123456789",
        series_uid="1.2.826.0.1.3680043.8.498.22345678901234567890123456789",
        instance_uid="1.2.826.0.1.3680043.8.498.32345678901234567890123456789",
        request_id="0123456789abcdef0123456789abcdef",
        detail="GET /dicom-web/studies/{study}/series/{series}/instances/{instance}"
        "/frames/{frames}",
    )


async def _backend_pid(audit: AuditLog) -> int | None:
    """The PostgreSQL server process of the writer's kept connection (None on SQLite)."""
    return await audit._chain.backend_pid()


def _cpu_seconds(pid: int | None) -> float:
    return 0.0 if pid is None else process_cpu_seconds(pid)


async def measure(url: str, sizes: list[int], batches: int) -> None:
    db = Database(url, pool_size=4)
    audit = AuditLog(db)
    try:
        for size in sizes:
            for _ in range(20):  # warm-up
                await audit._write([event() for _ in range(size)])
            backend = await _backend_pid(audit)
            per_event, server_per_event = [], []
            for _ in range(5):
                work = [[event() for _ in range(size)] for _ in range(batches)]
                started, server_started = time.process_time(), _cpu_seconds(backend)
                for batch in work:
                    await audit._write(batch)
                per_event.append((time.process_time() - started) / (batches * size) * 1e6)
                server_per_event.append(
                    (_cpu_seconds(backend) - server_started) / (batches * size) * 1e6
                )
            median = statistics.median(per_event)
            server = f", server {statistics.median(server_per_event):6.1f} us" if backend else ""
            print(
                f"batch {size:>4}: {median:6.1f} us per event (min {min(per_event):.1f})"
                f"{server}, {median * size:7.0f} us per batch"
            )
        report = await audit.verify()
        print(f"chain verified: {report.ok} ({report.rows} rows)")
    finally:
        await audit.close()
        await audit._release()  # the writer's kept connection, if any
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 15, 100])
    parser.add_argument("--batches", type=int, default=100, help="batches per timed round")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--server", default=pg.DEFAULT_SERVER, help="PostgreSQL server URL")
    args = parser.parse_args()
    if args.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/index.db"
            asyncio.run(migrate.upgrade(url))
            asyncio.run(measure(url, args.batch, args.batches))
        return
    with pg.throwaway_database(make_url(args.server)) as url:
        asyncio.run(migrate.upgrade(url))
        asyncio.run(measure(url, args.batch, args.batches))


if __name__ == "__main__":
    main()

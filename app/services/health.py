"""The server's health as the administration page shows it (issue 22, point 6): whether the index
and the object store answer (and how fast), how many audit events wait to be written, and what
this server runs (version, database, storage).

The same checks as ``/readyz``; the figures are the running process's own.
"""

import time
from dataclasses import dataclass, field

from app import __version__
from app.index.db import Database
from app.services.audit import AuditLog
from app.storage.base import ObjectStore

__all__ = ["Check", "HealthReport", "HealthService"]


@dataclass(frozen=True, slots=True)
class Check:
    """One back end's answer: ok or not, how long it took, what went wrong."""

    name: str
    ok: bool
    milliseconds: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HealthReport:
    version: str
    database: str
    storage: str
    checks: list[Check] = field(default_factory=list)
    #: audit events queued in this process and not written yet (None: not known)
    audit_queue: int | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


class HealthService:
    """Checks the back ends of this process."""

    def __init__(self, db: Database, store: ObjectStore, audit: AuditLog) -> None:
        self._db = db
        self._store = store
        self._audit = audit

    async def report(self) -> HealthReport:
        checks = []
        for name, check in (("index", self._db.check), ("storage", self._store.check)):
            started = time.perf_counter()
            try:
                await check()
                ok, detail = True, ""
            except Exception as exc:  # any failure is "not ready"; what it was is shown
                ok, detail = False, f"{type(exc).__name__}: {exc}"[:300]
            checks.append(Check(name, ok, (time.perf_counter() - started) * 1000, detail))
        # the audit log's queue depth (a public figure since the metrics of issue 23)
        depth = getattr(self._audit, "queue_depth", None)
        return HealthReport(
            version=__version__,
            database="SQLite" if self._db.is_sqlite else "PostgreSQL",
            storage=type(self._store).__name__.removesuffix("Store") or "object store",
            checks=checks,
            audit_queue=depth if isinstance(depth, int) else None,
        )

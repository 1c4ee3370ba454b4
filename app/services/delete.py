"""DELETE of a study, series or instance (RES-10, DEL-01..04): the other half of DESIGN.md §4.

Deletion runs the write protocol backwards:

1. one index transaction removes the rows, moves the series and study counts by the numbers
   removed (a series or study left empty goes too; ModalitiesInStudy is computed from the series
   that remain), writes tombstones (DEL-04) so a later retrieve answers 410 for
   ``tombstone_ttl`` instead of 404, and adds the delete's audit row (DEL-03; as durable as the
   delete, ``app.services.audit``);
2. only after the commit are the blobs removed from the object store.

A crash between 1 and 2 leaves blobs no row references, which ``lightbox gc`` sweeps; an index
row never points at a missing blob. Just before removing the blobs, the keys are checked against
the index once more, so a byte-identical instance stored again meanwhile (same key) keeps its blob.
Lock waits and deadlocks with a concurrent ingest into the same study are retried.
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.dicom.target import Target
from app.errors import NotFound, Unavailable
from app.index.db import Database, DriverError, is_retryable
from app.index.deletion import DeletedRows, delete_target, live_tombstone, referenced_blobs
from app.services.audit import AuditRecord, Outcome, WriteAudit
from app.storage.base import ObjectStore, StorageError

__all__ = ["DeleteOutcome", "DeleteService", "tombstoned"]

log = logging.getLogger(__name__)

_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class DeleteOutcome:
    """What a delete removed (for the audit trail and the caller's log)."""

    target: Target
    instances: int
    series_removed: int
    study_removed: bool
    blobs_removed: int
    blobs_left: int  # removal failed: unreferenced now, so ``lightbox gc`` sweeps them
    #: the study's PatientID, read before its rows went (an audit row names the patient)
    patient_id: str | None = None


class DeleteService:
    """Deletes resources from the index and then from the object store."""

    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        *,
        tombstone_ttl: timedelta | None = timedelta(days=30),
        blob_concurrency: int = 8,
    ) -> None:
        self._db = db
        self._store = store
        self._ttl = tombstone_ttl if tombstone_ttl and tombstone_ttl > timedelta(0) else None
        self._blob_concurrency = blob_concurrency

    async def delete(self, target: Target, *, audit: WriteAudit | None = None) -> DeleteOutcome:
        """Delete the target; :class:`NotFound` if it does not exist (or is already deleted).

        With ``audit``, the delete's audit row commits in its transaction."""
        rows = await self._delete_rows(target, audit)
        if rows is None:
            raise NotFound(f"no such {target.noun}")
        removed, left = await self._remove_blobs(rows.blob_keys)
        return DeleteOutcome(
            target,
            rows.instances,
            len(rows.series),
            rows.study_removed,
            removed,
            left,
            rows.patient_id,
        )

    async def _delete_rows(self, target: Target, audit: WriteAudit | None) -> DeletedRows | None:
        for attempt in range(_ATTEMPTS):
            now = datetime.now(UTC)
            until = now + self._ttl if self._ttl is not None else None
            try:
                async with self._db.write() as conn:
                    rows = await delete_target(conn, target, now=now, tombstone_until=until)
                    if rows is not None and audit is not None:
                        await audit.journal(
                            conn,
                            AuditRecord(
                                action="delete",
                                outcome=Outcome.SUCCESS,
                                study_uid=target.study_uid,
                                series_uid=target.series_uid,
                                instance_uid=target.sop_uid,
                                patient_id=rows.patient_id,
                                count=rows.instances,
                                detail=f"{rows.instances} deleted (the row committed with the "
                                "write)",
                            ),
                        )
                    return rows
            except DriverError as exc:
                if attempt + 1 < _ATTEMPTS and is_retryable(exc):
                    log.warning("retrying delete after %s", type(exc).__name__)
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                log.error("delete failed in the index: %s", exc)
                raise Unavailable("the index could not be updated") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _remove_blobs(self, keys: list[str]) -> tuple[int, int]:
        if not keys:
            return 0, 0
        async with self._db.read() as conn:
            keep = await referenced_blobs(conn, keys)
        slots = asyncio.Semaphore(self._blob_concurrency)

        async def remove(key: str) -> bool:
            async with slots:
                try:
                    await self._store.delete(key)
                    return True
                except StorageError as exc:
                    log.warning("could not remove blob %s after delete (gc will): %s", key, exc)
                    return False

        results = await asyncio.gather(*(remove(k) for k in keys if k not in keep))
        removed = sum(results)
        return removed, len(results) - removed


async def tombstoned(db: Database, target: Target) -> bool:
    """Whether the resource was deleted and its tombstone is still alive (DEL-04)."""
    async with db.read() as conn:
        return await live_tombstone(conn, target, now=datetime.now(UTC))

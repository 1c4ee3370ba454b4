"""Consistency between the index and the object store: ``lightbox fsck`` and ``lightbox gc``.

The write protocol (DESIGN.md §4) guarantees that an index row never points at a missing blob;
what it allows is blobs no row points at (a crash between the blob write and the commit). fsck
reports both kinds of drift plus content that no longer matches its recorded SHA-256; gc removes
unreferenced blobs older than a grace period, re-checking each one just before deleting it.
"""

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio.to_thread

from app.dicom.parse import PART10_PREFIX_LENGTH, has_part10_prefix
from app.index.db import Database
from app.index.repository import InstanceIndex
from app.storage.base import ObjectNotFound, ObjectStore
from app.storage.filesystem import FilesystemStore

BLOB_PREFIX = "dicom/"


@dataclass(slots=True)
class FsckReport:
    """What fsck found; ``ok`` when nothing."""

    rows_checked: int = 0
    blobs_checked: int = 0
    missing_blobs: list[str] = field(default_factory=list)  # SOP UIDs whose blob is absent
    size_mismatches: list[str] = field(default_factory=list)  # SOP UIDs
    hash_mismatches: list[str] = field(default_factory=list)  # SOP UIDs
    unreferenced_blobs: list[str] = field(default_factory=list)  # blob keys

    @property
    def ok(self) -> bool:
        return not (
            self.missing_blobs
            or self.size_mismatches
            or self.hash_mismatches
            or self.unreferenced_blobs
        )


@dataclass(slots=True)
class GcReport:
    """What gc removed (or would remove, in a dry run)."""

    scanned: int = 0
    removed: list[str] = field(default_factory=list)
    kept_young: int = 0
    #: spool / temp files left by a crash mid-request (filesystem store), removed after grace
    temp_files_removed: int = 0


@dataclass
class BackfillReport:
    recorded: int = 0
    missing_blobs: int = 0


class MaintenanceService:
    """fsck and gc over one index and one object store."""

    def __init__(self, db: Database, store: ObjectStore) -> None:
        self.db = db
        self.store = store

    async def fsck(self, *, verify_hashes: bool = True) -> FsckReport:
        """Compare every index row with its blob and every blob with the index."""
        report = FsckReport()
        referenced: set[str] = set()
        async with self.db.read() as conn:
            async for key, sha256, size, sop_uid in InstanceIndex(conn).blobs():
                report.rows_checked += 1
                referenced.add(key)
                info = await self.store.stat(key)
                if info is None:
                    report.missing_blobs.append(sop_uid)
                    continue
                if info.size != size:
                    report.size_mismatches.append(sop_uid)
                    continue
                if verify_hashes and await self._sha256(key) != sha256:
                    report.hash_mismatches.append(sop_uid)
        async for obj in self.store.list(BLOB_PREFIX):
            report.blobs_checked += 1
            if obj.key not in referenced:
                report.unreferenced_blobs.append(obj.key)
        return report

    async def gc(self, *, grace: timedelta = timedelta(hours=1), dry_run: bool = False) -> GcReport:
        """Remove blobs no index row references that are older than ``grace``."""
        report = GcReport()
        cutoff = datetime.now(UTC) - grace
        async with self.db.read() as conn:
            referenced = {key async for key, *_ in InstanceIndex(conn).blobs()}
        candidates: list[str] = []
        async for obj in self.store.list(BLOB_PREFIX):
            report.scanned += 1
            if obj.key in referenced:
                continue
            if obj.modified > cutoff:
                report.kept_young += 1
                continue
            candidates.append(obj.key)
        for key in candidates:
            async with self.db.read() as conn:  # re-check: a commit may have landed meanwhile
                if await InstanceIndex(conn).has_blob(key):
                    continue
            if not dry_run:
                await self.store.delete(key)
            report.removed.append(key)
        if isinstance(self.store, FilesystemStore):
            report.temp_files_removed = await anyio.to_thread.run_sync(
                _sweep_temp, self.store.local_tmp_dir(), cutoff.timestamp(), dry_run
            )
        return report

    async def backfill(self, *, batch: int = 500) -> BackfillReport:
        """Fill what later releases record at ingest for rows stored before them: today
        whether each blob opens with the PS3.10 prefix (so retrieve knows every part's length
        up front). Reads 132 bytes per blob; safe to run while serving, and to run again."""
        report = BackfillReport()
        after = 0
        while True:
            async with self.db.read() as conn:
                rows = await InstanceIndex(conn).unrecorded_prefixes(after, batch)
            if not rows:
                return report
            found: dict[int, bool] = {}
            for row_id, key in rows:
                try:
                    head = await self.store.get_range(key, 0, PART10_PREFIX_LENGTH)
                except ObjectNotFound:
                    report.missing_blobs += 1  # fsck reports which
                    continue
                found[row_id] = has_part10_prefix(head)
            async with self.db.write() as conn:
                await InstanceIndex(conn).record_prefixes(found)
            report.recorded += len(found)
            after = rows[-1][0]

    async def _sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        try:
            async for chunk in self.store.open(key):
                digest.update(chunk)
        except ObjectNotFound:
            return ""
        return digest.hexdigest()


def _sweep_temp(directory: Path, cutoff: float, dry_run: bool) -> int:
    """Remove regular files in ``directory`` last modified before ``cutoff`` (a timestamp)."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                if not dry_run:
                    os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue  # renamed into place or removed meanwhile
    return removed

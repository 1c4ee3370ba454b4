"""Bulk ingest sessions (``lightbox import``'s): each batch's blobs are made durable together,
by one ``syncfs`` of the filesystem store, before the batch's index commit; a blob that cannot
be written fails its instance alone. On both index databases, with the filesystem store."""

import errno
import os
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from app.dicom.status import Status
from app.index.models import Instance
from app.services.container import Services
from app.services.ingest import IngestService, InstanceOutcome
from app.storage import filesystem
from app.storage.filesystem import FilesystemStore
from tests.factories import make_instance


def _bulk_ingest(services: Services, batch: int) -> IngestService:
    real = services.ingest
    assert isinstance(real.store, FilesystemStore)
    policy = replace(real.policy, batch_instances=batch)
    return IngestService(real.db, real.store, policy, real.spool_dir)


async def _store(ingest: IngestService, blobs: list[bytes]) -> list[InstanceOutcome]:
    session = ingest.session(protocol="import", bulk=True)
    for blob in blobs:
        spool = ingest.spool()
        spool.write(blob)
        part = spool.finish()
        await session.add(part, ingest.parse_blocking(part, sync=False))
    return (await session.finish()).outcomes


async def _count(services: Services) -> int:
    async with services.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(Instance))).scalar_one())


async def test_a_bulk_session_syncs_each_batch_once(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    if filesystem._syncfs is None:
        pytest.skip("syncfs is Linux's")  # pragma: no cover (CI runs Linux)
    ingest = _bulk_ingest(services, batch=4)
    real_syncfs, real_fsync = filesystem._syncfs, os.fsync
    synced: list[int] = []
    fsynced: list[int] = []

    def syncfs(fd: int) -> int:
        synced.append(fd)
        return real_syncfs(fd)

    def fsync(fd: int) -> None:
        fsynced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(filesystem, "_syncfs", syncfs)
    monkeypatch.setattr(os, "fsync", fsync)
    study = generate_uid()
    blobs = [make_instance(StudyInstanceUID=study, InstanceNumber=i) for i in range(10)]
    outcomes = await _store(ingest, blobs)

    assert [o.stored for o in outcomes] == [True] * 10
    # one per batch: the first goes at 4 parts, the next takes all that arrived meanwhile
    assert 2 <= len(synced) <= 3
    assert fsynced == []  # neither the spooled files nor the directories one by one
    assert await _count(services) == 10
    keys = [info.key async for info in services.store.list("dicom/")]
    assert len(keys) == 10
    stored = {await services.store.get_range(key, 0, 1 << 20) for key in keys}
    assert stored == set(blobs)  # byte for byte


async def test_a_blob_that_cannot_be_written_fails_alone(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest = _bulk_ingest(services, batch=8)
    blobs = [make_instance(PatientID=f"P{i}") for i in range(5)]
    real_replace = os.replace
    moved: list[str] = []

    def replace_file(src: str | Path, dst: str | Path) -> None:
        moved.append(str(src))
        if len(moved) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_file)
    outcomes = await _store(ingest, blobs)

    assert sum(o.stored for o in outcomes) == 4
    failed = [o for o in outcomes if not o.stored]
    assert failed[0].failure is Status.OUT_OF_RESOURCES
    assert await _count(services) == 4
    assert len([key async for key in services.store.list("dicom/")]) == 4
    assert list(ingest.spool_dir.iterdir()) == []  # the failed part discarded

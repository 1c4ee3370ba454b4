"""fsck and gc (issue "Archive core", point 7), on PostgreSQL and SQLite, service and CLI."""

import os
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.index.models import Instance
from app.services.container import Services
from tests.factories import make_instance, multipart, stow_headers


async def _store(client: httpx.AsyncClient, n: int) -> None:
    response = await client.post(
        "/dicom-web/studies",
        content=multipart([make_instance() for _ in range(n)]),
        headers=stow_headers(),
    )
    assert response.status_code == 200


def _blob_paths(settings: Settings) -> list[Path]:
    root = settings.data_dir / "blobs" / "dicom"
    return sorted(p for p in root.rglob("*.dcm"))


async def test_fsck_clean_then_finds_each_kind_of_drift(
    client: httpx.AsyncClient, services: Services, settings: Settings
) -> None:
    await _store(client, 4)
    report = await services.maintenance.fsck()
    assert report.ok
    assert (report.rows_checked, report.blobs_checked) == (4, 4)

    missing, corrupt, short, _ = _blob_paths(settings)
    missing.unlink()
    data = bytearray(corrupt.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    corrupt.write_bytes(bytes(data))
    short.write_bytes(short.read_bytes()[:-10])
    orphan = settings.data_dir / "blobs" / "dicom" / "aa" / "bb" / "orphan.0000000000000000.dcm"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by a crash")

    report = await services.maintenance.fsck()
    assert not report.ok
    assert len(report.missing_blobs) == 1
    assert len(report.hash_mismatches) == 1
    assert len(report.size_mismatches) == 1
    assert report.unreferenced_blobs == ["dicom/aa/bb/orphan.0000000000000000.dcm"]
    quick = await services.maintenance.fsck(verify_hashes=False)
    assert quick.hash_mismatches == []


async def test_gc_removes_only_old_unreferenced_blobs(
    client: httpx.AsyncClient, services: Services, settings: Settings
) -> None:
    await _store(client, 2)
    root = settings.data_dir / "blobs" / "dicom"
    old = root / "aa" / "bb" / "old.0000000000000000.dcm"
    young = root / "aa" / "bb" / "young.0000000000000000.dcm"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x")
    young.write_bytes(b"y")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))

    stale_spool = settings.data_dir / "blobs" / ".tmp" / "part-crashed.dcm"
    fresh_spool = settings.data_dir / "blobs" / ".tmp" / "part-in-flight.dcm"
    stale_spool.write_bytes(b"half a part")
    fresh_spool.write_bytes(b"arriving")
    os.utime(stale_spool, (two_hours_ago, two_hours_ago))

    dry = await services.maintenance.gc(grace=timedelta(hours=1), dry_run=True)
    assert dry.removed == ["dicom/aa/bb/old.0000000000000000.dcm"]
    assert old.exists()
    report = await services.maintenance.gc(grace=timedelta(hours=1))
    assert report.removed == ["dicom/aa/bb/old.0000000000000000.dcm"]
    assert report.kept_young == 1
    assert not old.exists()
    assert young.exists()
    assert report.temp_files_removed == 1
    assert not stale_spool.exists()
    assert fresh_spool.exists()
    assert len(_blob_paths(settings)) == 3  # 2 referenced + the young orphan
    after = await services.maintenance.fsck()
    assert after.unreferenced_blobs == ["dicom/aa/bb/young.0000000000000000.dcm"]
    assert after.missing_blobs == []


@pytest.mark.usefixtures("services")
def test_cli_fsck_and_gc_exit_codes(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTBOX_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("LIGHTBOX_STORAGE_URL", settings.resolved_storage_url())
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LIGHTBOX_AUTO_MIGRATE", "false")
    runner = CliRunner()
    clean = runner.invoke(cli, ["fsck", "--json"])
    assert clean.exit_code == 0, clean.output
    assert '"ok": true' in clean.output
    orphan = settings.data_dir / "blobs" / "dicom" / "cc" / "orphan.0000000000000000.dcm"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"z")
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    dirty = runner.invoke(cli, ["fsck"])
    assert dirty.exit_code == 1
    assert "unreferenced blobs: 1" in dirty.output
    swept = runner.invoke(cli, ["gc", "--grace-minutes", "60"])
    assert swept.exit_code == 0
    assert "removed 1" in swept.output
    assert runner.invoke(cli, ["fsck"]).exit_code == 0
    backfill = runner.invoke(cli, ["db", "backfill"])
    assert backfill.exit_code == 0, backfill.output
    assert "recorded 0 instances; 0 blobs missing" in backfill.output


async def test_backfill_records_the_part10_prefix_of_older_rows(
    client: httpx.AsyncClient,
    services: Services,
    settings: Settings,
) -> None:
    """Rows stored before the prefix was recorded (NULL) get it from their blob's first bytes,
    in batches; rows already recorded are left; a missing blob is counted, not fatal."""
    raws = [make_instance() for _ in range(5)]
    raws[1] = raws[1][132:]  # File Meta first, as some STOW clients send it
    response = await client.post(
        "/dicom-web/studies", content=multipart(raws), headers=stow_headers()
    )
    assert response.status_code == 200
    async with services.db.write() as conn:
        recorded = dict((await conn.execute(select(Instance.id, Instance.part10_prefix))).all())
        await conn.execute(update(Instance).values(part10_prefix=None))
    report = await services.maintenance.backfill(batch=2)
    assert (report.recorded, report.missing_blobs) == (5, 0)
    async with services.db.read() as conn:
        again = dict((await conn.execute(select(Instance.id, Instance.part10_prefix))).all())
    assert again == recorded
    assert sorted(map(bool, again.values())) == [False, True, True, True, True]
    assert (await services.maintenance.backfill()).recorded == 0  # nothing left to do

    async with services.db.write() as conn:
        await conn.execute(update(Instance).values(part10_prefix=None))
    _blob_paths(settings)[0].unlink()
    report = await services.maintenance.backfill()
    assert (report.recorded, report.missing_blobs) == (4, 1)

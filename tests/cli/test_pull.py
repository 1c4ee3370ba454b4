"""``lightbox pull``: killed mid-way and run again, everything arrives once, as the source sent
it."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.index.repository import InstanceIndex
from app.services.container import Services
from app.services.jobs import JobState
from tests.peers.legacy import (
    dataset_bytes,
    instance_files,
    loaded_legacy,
    one_series_studies,
    unused_port,
)
from tests.peers.orthanc import Orthanc

ROOT = Path(__file__).resolve().parents[2]
STUDIES = 8
PER_STUDY = 3


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    files = one_series_studies((f"CLI-{n:02}" for n in range(STUDIES)), PER_STUDY)
    with loaded_legacy(tmp_path_factory.mktemp("orthanc"), files) as orthanc:
        yield orthanc


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
    env.update(
        PYTHONPATH=str(ROOT),
        USER="migrator",
        LOGNAME="migrator",
        LIGHTBOX_DATABASE_URL=settings.resolved_database_url(),
        LIGHTBOX_STORAGE_URL=settings.resolved_storage_url(),
        LIGHTBOX_DATA_DIR=str(settings.data_dir),
        LIGHTBOX_AUTO_MIGRATE="false",
        # a killed runner's job is seen as interrupted a second later
        LIGHTBOX_DIMSE__PULL__LEASE_SECONDS="1",
    )
    return env


def _pull(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "pull", "--from", "LEGACY", "--json", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


async def _held(services: Services, sops: list[str]) -> dict[str, bytes]:
    async with services.db.read() as conn:
        found = await InstanceIndex(conn).find_instances(sops)
    return {
        sop: b"".join([chunk async for chunk in services.store.open(ref.blob_key)])
        for sop, ref in found.items()
    }


async def test_killed_then_resumed(services: Services, settings: Settings, legacy: Orthanc) -> None:
    await services.aes.add("LEGACY", "127.0.0.1", legacy.dicom_port)
    source = instance_files(legacy)
    env = _env(settings)
    first = _pull(env, "--concurrency", "1")
    try:
        # kill it once a study is done, long before the last
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            jobs, _ = await services.jobs.page(limit=1, offset=0)
            if jobs and any(i.state == "done" for i in await services.jobs.items(jobs[0].id)):
                break
            assert first.poll() is None, first.communicate()
            await asyncio.sleep(0.02)
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=30)
        for stream in (first.stdout, first.stderr):
            if stream is not None:
                stream.close()
    (job,) = (await services.jobs.page(limit=5, offset=0))[0]
    held = await _held(services, list(source))
    assert PER_STUDY <= len(held) < len(source)
    await asyncio.sleep(1.2)  # its lease runs out: the job is seen as interrupted
    assert (await services.jobs.get(job.id)).state is JobState.INTERRUPTED

    second = await asyncio.to_thread(_finish, _pull(env, "--concurrency", "3"))
    assert second.returncode == 0, second.stderr
    assert f"resuming job {job.id}" in second.stderr
    report = json.loads(second.stdout)
    assert (report["job"], report["state"], report["failures"]) == (job.id, "completed", [])
    assert report["fetched"] == len(source) - len(held)  # nothing held was fetched again
    assert report["progress"]["units_done"] + report["progress"]["units_skipped"] == STUDIES
    everything = await _held(services, list(source))
    assert set(everything) == set(source)
    for sop, blob in everything.items():
        assert dataset_bytes(blob) == dataset_bytes(source[sop]), sop


def _finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.usefixtures("services")
def test_refusals_and_an_unreachable_source(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _env(settings).items():
        if name.startswith("LIGHTBOX_") or name in ("USER", "LOGNAME"):
            monkeypatch.setenv(name, value)
    runner = CliRunner()
    unknown = runner.invoke(cli, ["pull", "--from", "NOWHERE"])
    assert unknown.exit_code == 1
    assert "error: no remote AE 'NOWHERE' is known" in unknown.output
    bad = runner.invoke(cli, ["pull", "--from", "X", "--query", "Modality"])
    assert bad.exit_code == 2
    assert "is not KEY=VALUE" in bad.output
    assert runner.invoke(cli, ["ae", "add", "GONE", "127.0.0.1", str(unused_port())]).exit_code == 0
    gone = runner.invoke(cli, ["pull", "--from", "GONE", "--query", "PatientID=X"])
    assert gone.exit_code == 1
    assert "failed (cannot reach GONE at 127.0.0.1:" in gone.output

"""Crash safety over DIMSE (DESIGN.md §4, DIMSE-05): SIGKILL during a storescu run loses no
instance that was answered 0x0000.

Three storescu processes (three associations) send a synthetic study to ``lightbox serve``'s DIMSE
listener; the server (HTTP process and DIMSE child) is killed with SIGKILL while they send, and
every instance storescu saw answered Success must be in the index with its blob and, once the
audit journal is recovered (as a restart does), its audit row; fsck finds no row without a
blob.
"""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pydicom
from sqlalchemy import select

from app.index.models import Instance
from app.services.container import open_services
from tests.conftest import make_settings
from tests.dimse.conftest import dimse_port, http_port
from tests.dimse.peers import parse_storescu_log
from tests.e2e.server import running_server, server_env
from tests.factories import make_instance

PEERS = 3
FILES_PER_PEER = 80


def _write_study(directory: Path) -> dict[Path, str]:
    """Small CT images of one study: path -> SOP Instance UID."""
    directory.mkdir(parents=True)
    study = pydicom.uid.generate_uid()
    files = {}
    for i in range(PEERS * FILES_PER_PEER):
        data = make_instance(StudyInstanceUID=study, PatientID="CRASH", rows=64, columns=64)
        path = directory / f"{i:04d}.dcm"
        path.write_bytes(data)
        files[path] = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    return files


async def _check(database_url: str, data_dir: Path, acked: set[str]) -> int:
    async with open_services(make_settings(database_url, data_dir)) as services:
        async with services.db.read() as conn:
            stored = set((await conn.execute(select(Instance.sop_uid))).scalars())
        missing = acked - stored
        assert not missing, f"{len(missing)} instances answered 0x0000 were lost"
        # what a restart does: chain the audit rows committed with writes the kill cut short
        await services.audit.recover()
        await services.audit.flush()
        audited = {row["instance_uid"] async for row in services.audit.rows()}
        unaudited = acked - audited
        assert not unaudited, f"{len(unaudited)} acknowledged C-STOREs have no audit row"
        assert (await services.audit.verify()).ok
        report = await services.maintenance.fsck()
        assert report.missing_blobs == []
        assert report.hash_mismatches == []
        return len(stored)


def test_sigkill_mid_storescu_loses_no_acknowledged_instance(
    fresh_database_url: str, tmp_path: Path
) -> None:
    files = _write_study(tmp_path / "study")
    paths = sorted(files)
    data_dir = tmp_path / "data"
    port = dimse_port()
    env = server_env(data_dir, fresh_database_url)
    env.update(LIGHTBOX_DIMSE__ENABLED="true", LIGHTBOX_DIMSE__PORT=str(port))
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    logs = [tmp_path / f"storescu{i}.log" for i in range(PEERS)]
    with running_server(env, port=http_port()) as server:
        senders = []
        for i, log in enumerate(logs):
            chunk = [str(p) for p in paths[i::PEERS]]
            with log.open("w") as out:
                senders.append(
                    subprocess.Popen(
                        ["storescu", "-v", "-aec", "LIGHTBOX", "127.0.0.1", str(port), *chunk],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            answered = sum(log.read_text().count("Store Response (Success)") for log in logs)
            if answered >= 40 or all(s.poll() is not None for s in senders):
                break
            time.sleep(0.05)
        server.kill()  # the HTTP process and the DIMSE child, mid-association
        for sender in senders:
            sender.wait(60)
    acked = set()
    for log in logs:
        for path, outcome in parse_storescu_log(log.read_text()).items():
            if outcome == "Success":
                acked.add(files[path])
    assert len(acked) >= 40
    assert len(acked) < len(files), "the kill came after the last instance: nothing was tested"
    stored = asyncio.run(_check(fresh_database_url, data_dir, acked))
    assert stored >= len(acked)

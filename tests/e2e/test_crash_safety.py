"""Crash safety (DESIGN.md §4): SIGKILL mid-STOW loses no acknowledged instance.

Clients stream STOW requests into a server process; the server is killed with SIGKILL while
requests are in flight, restarted, and every instance acknowledged before the kill must be in the
index with its blob, and every acknowledged request must have its audit row (issue 19 class 6).
fsck must find no row without a blob; after gc, fsck is clean.
"""

import asyncio
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from app.index.models import Instance
from app.services.container import open_services
from tests.conftest import make_settings
from tests.e2e.server import running_server, server_env
from tests.factories import make_instance, multipart, stow_headers

CLIENTS = 3
BATCH = 4


def _client_loop(
    url: str, acked: set[str], requests: set[str], stop: threading.Event, errors: list[str]
) -> None:
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            parts = [make_instance(rows=64, columns=64) for _ in range(BATCH)]
            request_id = f"crash-{uuid.uuid4().hex}"
            try:
                response = http.post(
                    f"{url}/studies",
                    content=multipart(parts),
                    headers={**stow_headers(), "X-Request-ID": request_id},
                )
            except httpx.HTTPError:
                return  # the server died mid-request: nothing of this request was acknowledged
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")
                return
            for item in response.json()["00081199"]["Value"]:
                acked.add(item["00081155"]["Value"][0])
            requests.add(request_id)


async def _check(
    database_url: str, data_dir: Path, acked: set[str], requests: set[str]
) -> tuple[int, object]:
    async with open_services(make_settings(database_url, data_dir)) as services:
        async with services.db.read() as conn:
            stored = set((await conn.execute(select(Instance.sop_uid))).scalars())
        missing = acked - stored
        assert not missing, f"{len(missing)} acknowledged instances lost"
        audited = {row["request_id"] async for row in services.audit.rows()}
        unaudited = requests - audited
        assert not unaudited, f"{len(unaudited)} acknowledged stores have no audit row"
        assert (await services.audit.verify()).ok
        report = await services.maintenance.fsck()
        assert report.missing_blobs == []
        assert report.hash_mismatches == []
        assert report.size_mismatches == []
        await services.maintenance.gc(grace=timedelta(0))
        after = await services.maintenance.fsck()
        assert after.ok, after
        return len(stored), report


def test_sigkill_mid_stow_loses_no_acknowledged_instance(
    fresh_database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    env = server_env(data_dir, fresh_database_url)
    acked: set[str] = set()
    requests: set[str] = set()
    errors: list[str] = []
    with running_server(env) as server:
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=_client_loop, args=(server.dicomweb, acked, requests, stop, errors)
            )
            for _ in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acked) < 40 and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        server.kill()  # in the middle of the clients' requests
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors
    assert len(acked) >= 40
    with running_server(env) as server:  # restarts cleanly on the same data
        assert httpx.get(f"{server.url}/readyz").status_code == 200
    stored, _ = asyncio.run(_check(fresh_database_url, data_dir, acked, requests))
    assert stored >= len(acked)

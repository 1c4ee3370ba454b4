"""Metrics and logs of a real ``lightbox serve --workers 2`` (issue 23 points 4, 5, 6, 10):

- the metrics of both workers add up, on ``/metrics`` (admin token) and on the separate
  ``metrics.port`` (no token); a dead worker's live gauges leave, its counts stay;
- a job scheduled inside ``serve`` runs once between the workers (the lease);
- the log is JSON lines carrying request id, route template, status, duration and actor, and
  holds no patient name nor token, though a search named one and a WADO-URI URL carried one.
"""

import http.client
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from pydicom.uid import generate_uid

from tests.auth.helpers import Tokens, auth_settings
from tests.e2e.server import Server, running_server, server_env
from tests.factories import make_instance, multipart, stow_headers
from tests.metrics import metric
from tests.ports import free_port

pytestmark = pytest.mark.slow

QIDO = "/dicom-web/studies"


def _get(server: Server, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """One request on a connection of its own (the kernel picks the worker); its status and the
    worker that answered (request ids start with a prefix per process)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, str(response.getheader("x-request-id")).split("-")[0]
    finally:
        conn.close()


def _workers(server: Server) -> list[psutil.Process]:
    children = psutil.Process(server.process.pid).children()
    return [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def _log_entries(server: Server) -> list[dict[str, Any]]:
    entries = []
    for line in server.log.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
        else:  # what serve and its migration print (to a person starting it), not log records
            assert line.startswith(("Lightbox: ", "index schema at ", "  ")), line
    return entries


def test_two_workers_metrics_logs_and_lease(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'index.db'}"
    port, metrics_port = free_port(), free_port()
    env = server_env(
        data_dir,
        database_url,
        LIGHTBOX_LOG_FORMAT="json",
        LIGHTBOX_LOG_LEVEL="info",
        LIGHTBOX_METRICS__PORT=str(metrics_port),
        LIGHTBOX_MAINTENANCE__FSCK_INTERVAL_HOURS="1",
        LIGHTBOX_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}/dicom-web",
    )
    env.pop("LIGHTBOX_AUTH__ENABLED")  # access control on, as in production
    with running_server(env, port=port, args=["--workers", "2"]) as server:
        tokens = Tokens(auth_settings(database_url, data_dir))
        token = tokens.make(subject="e2e-reader")
        headers = {"Authorization": f"Bearer {token}"}
        study, series, sop = (str(generate_uid()) for _ in range(3))
        stored = httpx.post(
            f"{server.dicomweb}/studies",
            content=multipart(
                [
                    make_instance(
                        StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=sop
                    )
                ]
            ),
            headers={**headers, **stow_headers()},
            timeout=30,
        )
        assert stored.status_code == 200, stored.text

        # searches on new connections until both workers answered (the second may still be
        # starting: /readyz answers once one serves)
        answered: dict[str, int] = {}
        sent = 0
        deadline = time.monotonic() + 60
        while len(answered) < 2 or sent < 6:
            assert time.monotonic() < deadline, f"{sent} searches reached {len(answered)} worker"
            status, worker = _get(server, f"{QIDO}?PatientName=Doe%5EJane&limit=5", headers)
            assert status == 200
            answered[worker] = answered.get(worker, 0) + 1
            sent += 1
        wado_uri = (
            f"/dicom-web/wado?requestType=WADO&studyUID={study}&seriesUID={series}"
            f"&objectUID={sop}&contentType=application/dicom&access_token={token}"
        )
        assert _get(server, wado_uri, headers)[0] == 200

        admin = tokens.headers(["admin"])
        assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 401
        scraped = httpx.get(f"{server.url}/metrics", headers=admin, timeout=10)
        assert scraped.status_code == 200
        unauthenticated = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        count = "lightbox_http_request_duration_seconds_count"
        searches = {"service": "qido", "route": QIDO, "status": "200"}
        for text in (scraped.text, unauthenticated):
            assert metric(text, count, **searches) == sent  # both workers' counts, summed
            assert metric(text, "lightbox_worker_processes") == 2
            assert metric(text, "lightbox_ingest_instances_total", protocol="stow") == 1
            runs = metric(text, "lightbox_housekeeping_runs_total", job="fsck")
            assert runs == 1  # two workers, one run: the lease
            assert metric(text, "lightbox_fsck_problems", kind="missing_blobs") == 0

        # a worker dies: gunicorn replaces it; its live gauges go, its counts stay
        victim = _workers(server)[0]
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            text = httpx.get(f"{server.url}/metrics", headers=admin, timeout=10).text
            alive = [w for w in _workers(server) if w.pid != victim.pid]
            if len(alive) == 2 and metric(text, "lightbox_worker_processes") == 2:
                break
            assert time.monotonic() < deadline, "the dead worker stayed in the metrics"
            time.sleep(0.3)
        assert metric(text, count, **searches) == sent
        assert metric(text, "lightbox_housekeeping_runs_total", job="fsck") == 1

    entries = _log_entries(server)
    access = [e for e in entries if e["logger"] == "lightbox.access"]
    searches_logged = [e for e in access if (e["method"], e["route"]) == ("GET", QIDO)]
    assert len(searches_logged) == sent
    assert len({e["pid"] for e in searches_logged}) == 2  # both workers wrote JSON lines
    for entry in searches_logged:
        assert entry["level"] == "INFO"
        assert entry["time"].endswith("Z")
        assert (entry["method"], entry["status"], entry["actor"]) == ("GET", 200, "e2e-reader")
        assert entry["duration_ms"] > 0
        assert entry["request_id"].split("-")[0] in answered
    assert any(e["route"] == "/dicom-web/wado" and e["status"] == 200 for e in access)
    # gunicorn's own records are JSON lines too
    assert any(e["logger"].startswith("gunicorn") for e in entries)
    text = server.log.read_text(encoding="utf-8")
    for secret in (token, "Doe", study):
        assert secret not in text


def test_one_process_logs_no_query_in_text_either(tmp_path: Path) -> None:
    """A single uvicorn process, text format: its access lines are ours too (uvicorn's, with
    the request line, stay off), at INFO."""
    data_dir = tmp_path / "data"
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'index.db'}"
    env = server_env(data_dir, database_url, LIGHTBOX_LOG_FORMAT="text", LIGHTBOX_LOG_LEVEL="info")
    env.pop("LIGHTBOX_AUTH__ENABLED")
    with running_server(env) as server:
        token = Tokens(auth_settings(database_url, data_dir)).make(subject="e2e-text")
        headers = {"Authorization": f"Bearer {token}"}
        assert _get(server, f"{QIDO}?PatientName=Doe%5EJane", headers)[0] == 204
        wado_uri = (
            f"/dicom-web/wado?requestType=WADO&studyUID=1.2.3&seriesUID=1.2.3.4"
            f"&objectUID=1.2.3.4.5&access_token={token}"
        )
        assert _get(server, wado_uri, headers)[0] == 404
    text = server.log.read_text(encoding="utf-8")
    assert f"INFO lightbox.access: GET {QIDO} 204 " in text
    assert "INFO lightbox.access: GET /dicom-web/wado 404 " in text
    assert token not in text
    assert "Doe" not in text
    assert "1.2.3.4.5" not in text
    assert not any(line.startswith("{") for line in text.splitlines())

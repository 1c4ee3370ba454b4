"""``GET /metrics`` (issue 23 point 4): admin only; the values move with STOW-RS, QIDO-RS and
WADO-RS; requests are labelled by route template, never by path.

In the test process the metrics live in prometheus-client's process registry (no multiprocess
directory), shared by every test: each test compares values before and after what it does.
"""

from pathlib import Path

import httpx
from pydicom.uid import generate_uid

from tests.auth.helpers import Tokens, auth_client, auth_settings
from tests.factories import make_instance, multipart, stow_headers
from tests.metrics import metric

ROOT = "/dicom-web"


async def scrape(http: httpx.AsyncClient, tokens: Tokens) -> str:
    response = await http.get("/metrics", headers=tokens.headers(["admin"]))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


async def test_metrics_need_the_admin_permission(database_url: str, tmp_path: Path) -> None:
    async with auth_client(auth_settings(database_url, tmp_path / "data")) as (_, http, tokens):
        assert (await http.get("/metrics")).status_code == 401
        refused = await http.get("/metrics", headers=tokens.headers(["read", "write", "delete"]))
        assert refused.status_code == 403
        text = await scrape(http, tokens)
        assert "lightbox_http_request_duration_seconds" in text
        assert "lightbox_worker_processes" in text


async def test_metrics_move_with_stow_qido_and_wado(database_url: str, tmp_path: Path) -> None:
    study, series = str(generate_uid()), str(generate_uid())
    raws = [
        make_instance(StudyInstanceUID=study, SeriesInstanceUID=series, Modality="CT")
        for _ in range(3)
    ]
    async with auth_client(auth_settings(database_url, tmp_path / "data")) as (_, http, tokens):
        before = await scrape(http, tokens)
        headers = tokens.headers()
        stored = await http.post(
            f"{ROOT}/studies", content=multipart(raws), headers={**headers, **stow_headers()}
        )
        assert stored.status_code == 200
        again = multipart([raws[0][:-1] + b"X"])  # same SOP Instance UID, other content
        refused = await http.post(
            f"{ROOT}/studies", content=again, headers={**headers, **stow_headers()}
        )
        assert refused.status_code == 409
        found = await http.get(
            f"{ROOT}/studies/{study}/series", params={"PatientName": "Doe^Jane"}, headers=headers
        )
        assert found.status_code == 200
        retrieved = await http.get(
            f"{ROOT}/studies/{study}/series/{series}",
            headers={**headers, "Accept": 'multipart/related; type="application/dicom"'},
        )
        assert retrieved.status_code == 200
        unmatched = await http.get(f"/no/such/{study}", headers=headers)
        assert unmatched.status_code == 404
        after = await scrape(http, tokens)

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    count = "lightbox_http_request_duration_seconds_count"
    assert moved(count, service="stow", method="POST", route=f"{ROOT}/studies", status="200") == 1
    assert moved(count, service="stow", status="409") == 1
    qido = {"service": "qido", "route": f"{ROOT}/studies/{{study}}/series", "status": "200"}
    assert moved(count, **qido) == 1
    assert moved("lightbox_http_request_duration_seconds_sum", **qido) > 0
    wado = {"service": "wado", "route": f"{ROOT}/studies/{{study}}/series/{{series}}"}
    assert moved(count, **wado) == 1
    assert moved(count, route="<unmatched>", status="404") == 1
    # the request's values are never labels: no UID, no patient name
    assert study not in after
    assert "Doe" not in after
    assert moved("lightbox_ingest_instances_total", protocol="stow") == 3
    assert moved("lightbox_ingest_bytes_total", protocol="stow") == sum(len(r) for r in raws)
    assert moved("lightbox_ingest_failures_total", reason="duplicate_instance") == 1
    # the blobs written and read, timed by the store
    blob = "lightbox_blob_operation_duration_seconds_count"
    assert moved(blob, store="filesystem", operation="put") == 3
    assert moved("lightbox_audit_events_written_total") >= 0
    assert metric(after, "lightbox_db_pool_connections", pool="sqlalchemy") >= 1


async def test_metrics_can_be_switched_off(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    settings.metrics.enabled = False
    async with auth_client(settings) as (_, http, tokens):
        assert (await http.get("/metrics", headers=tokens.headers(["admin"]))).status_code == 404

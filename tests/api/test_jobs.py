"""``/api/jobs``: a pull started over HTTP runs in the server process; any replica reads it,
cancels it, resumes it. Admin only, audited."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.dimse.pull import DimsePullSources
from app.main import create_app
from app.services.audit import AuditFilter
from app.services.container import open_services
from tests.auth.helpers import auth_client, auth_settings
from tests.peers.legacy import loaded_legacy, one_series_studies
from tests.peers.orthanc import Orthanc

STUDIES = 4
PER_STUDY = 5


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    files = one_series_studies((f"API-{n}" for n in range(STUDIES)), PER_STUDY)
    with loaded_legacy(tmp_path_factory.mktemp("orthanc"), files) as orthanc:
        yield orthanc


async def _until(http: httpx.AsyncClient, location: str, headers: Any, *states: str) -> Any:
    for _ in range(400):
        body = (await http.get(location, headers=headers)).json()
        if body["state"] in states:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"the job stayed {body['state']}")


async def test_a_pull_job_over_http(database_url: str, tmp_path: Path, legacy: Orthanc) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with auth_client(settings) as (services, http, tokens):
        services.pull.sources = DimsePullSources.from_settings(settings)
        admin = tokens.headers(["admin"], subject="jobs-admin")
        await services.aes.add("LEGACY", "127.0.0.1", legacy.dicom_port)
        started = await http.post(
            "/api/jobs/pull",
            json={"source": "LEGACY", "query": {"PatientID": "API-*"}, "concurrency": 2},
            headers=admin,
        )
        assert started.status_code == 202, started.text
        location = started.headers["location"]
        job_id = started.json()["id"]
        assert location == f"/api/jobs/{job_id}"
        assert started.json()["state"] == "running"
        assert started.json()["parameters"] == {
            "source": "LEGACY",
            "query": {"PatientID": "API-*"},
            "level": "STUDY",
            "method": "get",
        }
        # the same pull while it runs: 409 naming its job
        again = await http.post(
            "/api/jobs/pull",
            json={"source": "LEGACY", "query": {"PatientID": "API-*"}},
            headers=admin,
        )
        if again.status_code == 409:
            assert job_id in again.json()["detail"]
        done = await _until(http, location, admin, "completed", "failed")
        assert done["state"] == "completed", done
        assert done["progress"]["units_done"] == STUDIES
        assert done["progress"]["instances_stored"] == STUDIES * PER_STUDY
        assert done["failures"] == []
        assert done["owner"] == "jobs-admin"
        listed = await http.get("/api/jobs", headers=admin)
        assert [j["id"] for j in listed.json()["items"]] == [job_id]
        assert listed.headers["x-total-count"] == "1"

        # another replica (its own services on the same index) answers for the job
        async with open_services(settings) as replica:
            app = create_app(settings, services=replica)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://r") as other:
                seen = await other.get(location, headers=admin)
                assert seen.json()["state"] == "completed"
                assert (await other.post(f"{location}/cancel", headers=admin)).status_code == 409

        await services.audit.flush()
        rows, _ = await services.audit.search(AuditFilter(actor="jobs-admin"), limit=200, offset=0)
        actions = {r["action"] for r in rows}
        assert {"job-start", "job-read", "pull-start", "pull-study", "pull-finish"} <= actions
        pulled = [r for r in rows if r["action"] == "pull-study"]
        assert sorted(r["patient_id"] for r in pulled) == [f"API-{n}" for n in range(STUDIES)]
        assert all(r["study_uid"] and r["count"] == PER_STUDY for r in pulled)
        start = next(r for r in rows if r["action"] == "job-start" and r["status"] != 409)
        assert (start["status"], start["detail"]) == (202, f"job {job_id}: pull from LEGACY")


async def test_cancel_then_resume_over_http(
    database_url: str, tmp_path: Path, legacy: Orthanc
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with auth_client(settings) as (services, http, tokens):
        services.pull.sources = DimsePullSources.from_settings(settings)
        admin = tokens.headers(["admin"])
        await services.aes.add("LEGACY", "127.0.0.1", legacy.dicom_port)
        started = await http.post(
            "/api/jobs/pull", json={"source": "LEGACY", "concurrency": 1}, headers=admin
        )
        location = started.headers["location"]
        cancel = await http.post(f"{location}/cancel", headers=admin)
        assert cancel.status_code == 202
        await services.jobs.wait()
        cancelled = (await http.get(location, headers=admin)).json()
        assert cancelled["state"] == "cancelled"
        assert cancelled["reason"] == "cancelled on request"
        resumed = await http.post(f"{location}/resume", headers=admin)
        assert resumed.status_code == 202
        await services.jobs.wait()
        done = (await http.get(location, headers=admin)).json()
        assert done["state"] == "completed"
        assert done["progress"]["instances_stored"] + done["progress"]["instances_held"] == (
            STUDIES * PER_STUDY
        )


async def test_refusals(database_url: str, tmp_path: Path, legacy: Orthanc) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with auth_client(settings) as (services, http, tokens):
        services.pull.sources = DimsePullSources.from_settings(settings)
        admin = tokens.headers(["admin"])
        writer = tokens.headers(["read", "write", "delete"], subject="job-clerk")
        body = {"source": "LEGACY"}
        assert (await http.post("/api/jobs/pull", json=body)).status_code == 401
        assert (await http.post("/api/jobs/pull", json=body, headers=writer)).status_code == 403
        assert (await http.get("/api/jobs", headers=writer)).status_code == 403

        async def problem(response: httpx.Response) -> tuple[int, str]:
            assert response.headers["content-type"] == "application/problem+json"
            return response.status_code, response.json()["detail"]

        unknown = await http.post("/api/jobs/pull", json=body, headers=admin)
        assert await problem(unknown) == (
            404,
            "no remote AE 'LEGACY' is known: add it with `lightbox ae add` or POST /api/aes",
        )
        await services.aes.add("LEGACY", "127.0.0.1", legacy.dicom_port)
        bad_key = await http.post(
            "/api/jobs/pull", json={**body, "query": {"Modality": "CT"}}, headers=admin
        )
        assert (await problem(bad_key))[0] == 400
        assert "series-level key" in (await problem(bad_key))[1]
        bad_level = await http.post(
            "/api/jobs/pull", json={**body, "level": "IMAGE"}, headers=admin
        )
        assert await problem(bad_level) == (400, "invalid level 'IMAGE': STUDY or SERIES")
        too_many = await http.post(
            "/api/jobs/pull", json={**body, "concurrency": 99}, headers=admin
        )
        assert (await problem(too_many))[0] == 400
        missing = await http.get(f"/api/jobs/{'0' * 32}", headers=admin)
        assert await problem(missing) == (404, f"no job '{'0' * 32}'")
        assert (await http.post("/api/jobs/nope/cancel", headers=admin)).status_code == 404
        assert await services.jobs.page(limit=5, offset=0) == ([], 0)
        await services.audit.flush()
        rows, _ = await services.audit.search(AuditFilter(actor="job-clerk"), limit=10, offset=0)
        assert {(r["action"], r["outcome"]) for r in rows} == {
            ("job-start", "denied"),
            ("job-read", "denied"),
        }

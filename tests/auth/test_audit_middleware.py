"""The audit middleware (GEN-10, ``app.api.security``): what a request's audit row says of it, its
source address behind a trusted proxy, what a search looked for, request ids, and what waits in
the queue; no row for a preflight, none with the audit switched off."""

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from app.api.security import request_ids
from app.services.audit import AuditFilter
from tests.auth.helpers import auth_client, auth_settings
from tests.factories import make_instance, multipart, stow_headers

ROOT = "/dicom-web"
CLIENT = ("10.20.30.40", 51000)


def _by_request(items: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    matching = [i for i in items if i["request_id"] == request_id]
    assert len(matching) == 1, (request_id, items)
    return matching[0]


async def test_source_behind_a_trusted_proxy(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data", trusted_proxies=["127.0.0.1"])
    async with auth_client(settings) as (services, http, tokens):
        headers = {**tokens.headers(), "X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
        via_proxy = await http.get(f"{ROOT}/studies", headers=headers)
        await services.audit.flush()
        items, _ = await services.audit.search(AuditFilter(), limit=1000, offset=0)
        assert _by_request(items, via_proxy.headers["x-request-id"])["source"] == "203.0.113.9"
    # from an untrusted peer the header is ignored
    async with auth_client(auth_settings(database_url, tmp_path / "d2"), client_addr=CLIENT) as (
        services,
        http,
        tokens,
    ):
        mine = f"mine-{generate_uid()[-12:]}"
        headers = {**tokens.headers(), "X-Forwarded-For": "203.0.113.9", "X-Request-ID": mine}
        direct = await http.get(f"{ROOT}/studies", headers=headers)
        assert direct.headers["x-request-id"] == mine
        await services.audit.flush()
        items, _ = await services.audit.search(AuditFilter(), limit=1000, offset=0)
        assert _by_request(items, mine)["source"] == CLIENT[0]


async def test_audit_switched_off_records_nothing(database_url: str, tmp_path: Path) -> None:
    """LIGHTBOX_AUTH__AUDIT_ENABLED=false (measurement only): requests leave no audit row."""
    settings = auth_settings(database_url, tmp_path / "data", audit_enabled=False)
    async with auth_client(settings) as (services, http, tokens):
        _, before = await services.audit.search(AuditFilter(), limit=1, offset=0)
        response = await http.get(f"{ROOT}/studies", headers=tokens.headers())
        assert response.status_code == 204
        await services.audit.flush()
        _, after = await services.audit.search(AuditFilter(), limit=1, offset=0)
        assert after == before


async def test_a_search_records_what_it_looked_for(database_url: str, tmp_path: Path) -> None:
    """The query joins the detail; one PatientID or one StudyInstanceUID names the patient or
    study (PS3.15 A.5.3.10 keeps the query); wildcards and lists name nobody."""
    settings = auth_settings(database_url, tmp_path / "data")
    patient = f"PID-{generate_uid()[-8:]}"
    study = generate_uid()
    body = multipart([make_instance(StudyInstanceUID=study, PatientID=patient)])
    async with auth_client(settings) as (services, http, tokens):
        admin = tokens.headers(subject="clerk")
        stored = await http.post(
            f"{ROOT}/studies", content=body, headers={**stow_headers(), **admin}
        )
        assert stored.status_code == 200, stored.text
        searches = {
            "by_patient": f"{ROOT}/studies?PatientID={patient}&includefield=all",
            "by_tag": f"{ROOT}/studies?00100020={patient}",
            "by_study": f"{ROOT}/studies?StudyInstanceUID={study}",
            "wildcard": f"{ROOT}/studies?PatientID=PID-*",
            "list": f"{ROOT}/studies?StudyInstanceUID={study},{generate_uid()}",
            "long": f"{ROOT}/studies?PatientName={'x' * 3000}",
        }
        ids = {}
        for name, url in searches.items():
            response = await http.get(url, headers=admin)
            assert response.status_code in (200, 204), (name, response.text)
            ids[name] = response.headers["x-request-id"]
        refused = await http.get(
            f"{ROOT}/studies?PatientID={patient}", headers=tokens.headers(["write"])
        )
        assert refused.status_code == 403
        await services.audit.flush()
        items, _ = await services.audit.search(AuditFilter(actor="clerk"), limit=100, offset=0)

        def row(name: str) -> dict[str, Any]:
            return _by_request(items, ids[name])

        assert row("by_patient")["patient_id"] == patient
        assert row("by_patient")["detail"].endswith(f"?PatientID={patient}&includefield=all")
        assert row("by_tag")["patient_id"] == patient
        assert (row("by_study")["study_uid"], row("by_study")["patient_id"]) == (study, patient)
        assert row("wildcard")["patient_id"] is None
        assert "PatientID=PID-*" in row("wildcard")["detail"]
        assert row("list")["study_uid"] is None
        assert len(row("long")["detail"]) <= len(f"GET {ROOT}/studies?") + 1024
        denied = _by_request(
            (await services.audit.search(AuditFilter(action="search"), limit=1000, offset=0))[0],
            refused.headers["x-request-id"],
        )
        assert (denied["outcome"], denied["patient_id"]) == ("denied", patient)
        assert "PatientID" not in denied["detail"]  # the refusal is the detail
        # "who looked for this patient?" finds the searches
        for_patient, _ = await services.audit.search(
            AuditFilter(patient_id=patient, action="search"), limit=100, offset=0
        )
        assert {i["request_id"] for i in for_patient} >= {
            ids["by_patient"],
            ids["by_tag"],
            ids["by_study"],
        }


async def test_a_request_is_audited_at_its_end_time_and_with_its_own_id(
    database_url: str, tmp_path: Path
) -> None:
    """The row's time is when the request ended, not when the writer (a linger later) built it;
    request ids made by the server are distinct and well-formed."""
    settings = auth_settings(database_url, tmp_path / "data", audit_linger_seconds=0.5)
    async with auth_client(settings) as (services, http, tokens):
        before = datetime.now(UTC)
        responses = [
            await http.get("/dicom-web/studies", headers=tokens.headers()) for _ in range(20)
        ]
        after = datetime.now(UTC)
        ids = [r.headers["x-request-id"] for r in responses]
        assert len(set(ids)) == 20
        assert all(re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", i) for i in ids), ids
        await services.audit.flush()
        items, _ = await services.audit.search(AuditFilter(), limit=1000, offset=0)
        mine = [i for i in items if i["request_id"] in set(ids)]
        assert mine  # searches of one caller in one batch: one row (aggregated), or more
        for item in mine:
            when = datetime.fromisoformat(item["time"].replace("Z", "+00:00"))
            assert before <= when <= after, (before, when, after)


def test_request_ids_of_a_forked_process_take_a_new_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = request_ids.RequestIds()
    first, second = ids.next(), ids.next()
    assert first.split("-")[0] == second.split("-")[0]
    assert (first.split("-")[1], second.split("-")[1]) == ("1", "2")
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)  # as in a forked child
    child = ids.next()
    assert child.split("-")[0] != first.split("-")[0]
    assert child.split("-")[1] == "1"


async def test_a_queued_event_keeps_nothing_of_its_request(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What waits in the queue is a few values, never the request's scope (which holds the app,
    the route, the dependency stacks): up to ``queue_size`` finished requests would stay alive."""
    settings = auth_settings(database_url, tmp_path / "data")
    async with auth_client(settings) as (services, http, tokens):
        queued: list[Any] = []
        real = services.audit.record_later

        async def spy(event: Any) -> None:
            queued.append(event)
            await real(event)

        monkeypatch.setattr(services.audit, "record_later", spy)
        response = await http.get("/dicom-web/studies?PatientID=P-1", headers=tokens.headers())
        assert response.status_code == 204
        [pending] = queued
        reachable = list(pending.args)
        for value in list(reachable):
            if isinstance(value, dict):
                reachable += value.values()
        assert not any(isinstance(v, dict) and "app" in v for v in reachable)  # no scope
        assert not any(hasattr(v, "router") or hasattr(v, "endpoint") for v in reachable)
        event = pending()
        assert (event.action, event.patient_id, event.status) == ("search", "P-1", 204)
        assert event.request_id == response.headers["x-request-id"]
        await services.audit.flush()


async def test_options_on_the_root_is_audited_and_a_preflight_is_not(
    database_url: str, tmp_path: Path
) -> None:
    """OPTIONS on the DICOMweb root is the capabilities route (CAP-01): a 401 there leaves a
    ``login-failure`` row like any other route, an answer a ``capabilities`` row. A CORS
    preflight (GEN-09) carries no credentials by design, is answered before authentication, and
    is no access attempt: it leaves no row."""
    viewer = "http://viewer.example:3000"
    settings = auth_settings(database_url, tmp_path / "data", cors={"allow_origins": [viewer]})
    async with auth_client(settings) as (services, http, tokens):
        calls = {}
        for path in (f"{ROOT}/", ROOT):
            calls[f"anonymous {path}"] = await http.options(path)
            calls[f"token {path}"] = await http.options(
                path, headers={**tokens.headers(["read"]), "Accept": "application/json"}
            )
        assert calls[f"anonymous {ROOT}/"].status_code == 401
        assert calls[f"token {ROOT}/"].status_code == 200
        await services.audit.flush()
        items, _ = await services.audit.search(AuditFilter(), limit=1000, offset=0)
        for path in (f"{ROOT}/", ROOT):
            mine = calls[f"anonymous {path}"].headers["x-request-id"]
            [failure] = [i for i in items if i["request_id"] == mine]
            assert (failure["action"], failure["outcome"], failure["status"]) == (
                "login-failure",
                "denied",
                401,
            )
        # the two answers: one row each, or one that counts both (reads of one caller merge)
        answered_ids = {calls[f"token {p}"].headers["x-request-id"] for p in (f"{ROOT}/", ROOT)}
        answered = [i for i in items if i["request_id"] in answered_ids]
        assert {(i["action"], i["status"]) for i in answered} == {("capabilities", 200)}
        assert sum(i["requests"] for i in answered) == 2

        _, before = await services.audit.search(AuditFilter(), limit=1, offset=0)
        preflight = await http.options(
            f"{ROOT}/",
            headers={"Origin": viewer, "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == viewer
        await services.audit.flush()
        _, after = await services.audit.search(AuditFilter(), limit=1, offset=0)
        assert after == before

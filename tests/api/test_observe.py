"""The access log (:mod:`app.api.observe`, issue 23 points 5 and 10): one line per request with
the route template, status, duration, request id and actor; never the path's values nor the
query string; a failure's traceback once."""

import json
import logging
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from app.api.observe import ACCESS_LOGGER
from app.config import Settings
from app.logs import JsonFormatter
from app.main import create_app
from app.services.container import Services
from tests.auth.helpers import auth_client, auth_settings

ROOT = "/dicom-web"


def _access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


async def test_access_line_has_the_template_not_the_values(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    study = str(generate_uid())
    async with auth_client(auth_settings(database_url, tmp_path / "data")) as (_, http, tokens):
        token = tokens.make(["read"], subject="dr-who")
        with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
            found = await http.get(
                f"{ROOT}/studies/{study}/series",
                params={"PatientName": "Doe^Jane", "access_token": token},
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-42"},
            )
            anonymous = await http.get(f"{ROOT}/studies", params={"PatientName": "Doe^Jane"})
    assert found.status_code == 400  # access_token is no QIDO-RS parameter
    assert anonymous.status_code == 401
    first, second = _access(caplog)
    entry = json.loads(JsonFormatter().format(first))
    assert entry["message"].startswith(f"GET {ROOT}/studies/{{study}}/series 400 ")
    assert (entry["method"], entry["route"], entry["status"], entry["actor"]) == (
        "GET",
        f"{ROOT}/studies/{{study}}/series",
        400,
        "dr-who",
    )
    assert entry["request_id"] == "trace-42" == found.headers["x-request-id"]
    assert entry["duration_ms"] > 0
    second_entry = json.loads(JsonFormatter().format(second))
    assert second_entry["request_id"] == anonymous.headers["x-request-id"]
    assert "actor" not in second_entry  # no token, no actor
    logged = "\n".join(JsonFormatter().format(r) for r in caplog.records if r.name != "httpx")
    for value in (study, "Doe", token):
        assert value not in logged


async def test_records_of_a_request_carry_its_id(
    settings: Settings, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal logged by the error handler names the request the access line names."""
    app = create_app(settings, services=services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        with caplog.at_level(logging.INFO):
            response = await http.get(f"{ROOT}/studies", params={"NoSuchKey": "x"})
    assert response.status_code == 400
    request_id = response.headers["x-request-id"]
    refusal = next(r for r in caplog.records if r.name == "app.api.errors")
    access = next(r for r in caplog.records if r.name == ACCESS_LOGGER)
    for record in (refusal, access):
        assert json.loads(JsonFormatter().format(record))["request_id"] == request_id
    assert refusal.getMessage() == (
        f"GET {ROOT}/studies refused (400): NoSuchKey: unknown attribute or query parameter"
    )


async def test_a_failure_is_one_traceback_and_one_access_line(
    settings: Settings, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, services=services)

    async def broken(study: str) -> None:
        raise RuntimeError(f"a bug near {study}")

    app.add_api_route("/broken/{study}", broken)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        with caplog.at_level(logging.INFO):
            failed = await http.get("/broken/1.2.3?PatientName=Doe")
    assert failed.status_code == 500
    # the server's records (the test's HTTP client logs the URL it asked for)
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name != "httpx"]
    assert sum(line.count("Traceback (most recent call last)") for line in lines) == 1
    (access,) = _access(caplog)
    assert (access.__dict__["route"], access.__dict__["status"]) == ("/broken/{study}", 500)
    assert not any("Doe" in line for line in lines)


async def test_access_log_can_be_switched_off(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    settings.access_log = False
    async with auth_client(settings) as (_, http, _tokens):
        with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
            assert (await http.get("/healthz")).status_code == 200
    assert _access(caplog) == []

"""The audit trail (GEN-10): one row per transaction, refused and failed ones too; the hash chain
detects edits and removals; concurrent writers keep one valid chain; nothing is dropped."""

import asyncio
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.index import migrate
from app.index.db import Database
from app.services.audit import AuditFilter, AuditLog, AuditRecord
from tests.auth.helpers import auth_client, auth_settings
from tests.factories import make_instance, multipart, stow_headers

ROOT = "/dicom-web"
CLIENT = ("10.20.30.40", 51000)


def _by_request(items: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    matching = [i for i in items if i["request_id"] == request_id]
    assert len(matching) == 1, (request_id, items)
    return matching[0]


async def test_each_transaction_writes_its_row(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    patient = f"PID-{generate_uid()[-8:]}"
    body = multipart(
        [
            make_instance(
                StudyInstanceUID=study,
                SeriesInstanceUID=series,
                SOPInstanceUID=sop,
                PatientID=patient,
            )
        ]
    )
    async with auth_client(settings, client_addr=CLIENT) as (services, http, tokens):
        admin = tokens.headers(subject="dr-who")
        instance = f"{ROOT}/studies/{study}/series/{series}/instances/{sop}"
        calls = {
            "store": await http.post(
                f"{ROOT}/studies", content=body, headers={**stow_headers(), **admin}
            ),
            "search": await http.get(f"{ROOT}/studies?PatientID={patient}", headers=admin),
            "retrieve": await http.get(
                f"{ROOT}/studies/{study}", headers={**admin, "Accept": "multipart/related"}
            ),
            "metadata": await http.get(f"{instance}/metadata", headers=admin),
            "frames": await http.get(
                f"{instance}/frames/1",
                headers={**admin, "Accept": "multipart/related; type=application/octet-stream"},
            ),
            "login-failure": await http.get(f"{ROOT}/studies/{study}/metadata"),
            "denied": await http.get(
                f"{ROOT}/studies/{study}/metadata", headers=tokens.headers(["write"])
            ),
            "missing": await http.get(f"{ROOT}/studies/{generate_uid()}/metadata", headers=admin),
            "forged": await http.get(
                f"{ROOT}/studies", headers={"Authorization": "Bearer not.a.token"}
            ),
            "render": await http.get(f"{instance}/rendered", headers=admin),
            "delete": await http.delete(instance, headers=admin),
        }
        for name, response in calls.items():
            assert "x-request-id" in response.headers, name
        await services.audit.flush()
        items, _ = await services.audit.search(AuditFilter(), limit=1000, offset=0)

        def row(name: str) -> dict[str, Any]:
            return _by_request(items, calls[name].headers["x-request-id"])

        store = row("store")
        assert store["action"] == "store"
        assert store["outcome"] == "success"
        assert store["status"] == 200
        assert store["count"] == 1
        assert store["study_uid"] == study
        assert store["patient_id"] == patient
        assert store["actor"] == "dr-who"
        assert store["source"] == CLIENT[0]
        search = row("search")
        assert (search["action"], search["count"], search["status"]) == ("search", 1, 200)
        assert search["patient_id"] == patient  # the patient looked for
        assert search["detail"].endswith(f"/studies?PatientID={patient}")
        for action in ("retrieve", "metadata", "frames"):
            entry = row(action)
            assert entry["action"] == action
            assert entry["outcome"] == "success", entry
            assert entry["study_uid"] == study
            assert entry["patient_id"] == patient
        assert row("metadata")["instance_uid"] == sop
        assert row("frames")["series_uid"] == series
        failure = row("login-failure")
        assert (failure["action"], failure["outcome"], failure["status"]) == (
            "login-failure",
            "denied",
            401,
        )
        assert failure["actor"] is None
        assert failure["study_uid"] == study
        assert row("forged")["action"] == "login-failure"
        assert "malformed" in row("forged")["detail"]
        denied = row("denied")
        assert (denied["action"], denied["outcome"], denied["status"]) == (
            "metadata",
            "denied",
            403,
        )
        missing = row("missing")
        assert (missing["outcome"], missing["status"]) == ("failure", 404)
        render = row("render")
        assert (render["action"], render["outcome"], render["status"]) == ("render", "success", 200)
        deleted = row("delete")
        assert (deleted["action"], deleted["outcome"], deleted["status"]) == (
            "delete",
            "success",
            204,
        )
        assert (deleted["instance_uid"], deleted["count"]) == (sop, 1)
        assert deleted["patient_id"] == patient  # read before the rows were removed (DEL-03)

        # the admin API: filters and paging
        response = await http.get(f"/api/audit?patient={patient}&limit=2", headers=admin)
        assert response.status_code == 200
        page = response.json()
        assert page["total"] >= 6
        assert len(page["items"]) == 2
        assert all(i["patient_id"] == patient for i in page["items"])
        second = (
            await http.get(f"/api/audit?patient={patient}&limit=2&offset=2", headers=admin)
        ).json()
        assert {i["seq"] for i in second["items"]}.isdisjoint({i["seq"] for i in page["items"]})
        by_action = (await http.get("/api/audit?action=store&actor=dr-who", headers=admin)).json()
        assert [i["request_id"] for i in by_action["items"]] == [
            calls["store"].headers["x-request-id"]
        ]
        by_study = (await http.get(f"/api/audit?study={study}", headers=admin)).json()
        assert by_study["total"] >= 6
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        later = (await http.get("/api/audit", params={"since": future}, headers=admin)).json()
        assert later["total"] == 0
        bad = await http.get("/api/audit?since=yesterday", headers=admin)
        assert bad.status_code == 400
        assert (await http.get("/api/audit", headers=tokens.headers(["read"]))).status_code == 403
        await services.audit.flush()
        own = (await http.get("/api/audit?action=audit-query", headers=admin)).json()
        assert own["total"] >= 1


def _cli(database_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
    env.update(LIGHTBOX_DATABASE_URL=database_url, LIGHTBOX_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _fill(url: str, n: int) -> None:
    db = Database(url)
    audit = AuditLog(db, batch_size=4)
    try:
        for i in range(n):
            await audit.record(
                action="retrieve",
                outcome="success",
                status=200,
                actor=f"user{i}",
                study_uid=f"1.2.3.{i}",
                request_id=f"r{i}",
            )
        await audit.flush()
    finally:
        await audit.close()
        await db.close()


@pytest.mark.parametrize("tamper", ["update", "delete"])
async def test_tampering_is_detected(fresh_database_url: str, tmp_path: Path, tamper: str) -> None:
    url = fresh_database_url
    await migrate.upgrade(url)
    await _fill(url, 10)
    ok = _cli(url, tmp_path, "audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "10 audit events checked" in ok.stdout

    exported = _cli(url, tmp_path, "audit", "export")
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 11))
    xml = _cli(url, tmp_path, "audit", "export", "--format", "dicom")
    messages = [ET.fromstring(line) for line in xml.stdout.splitlines()]
    assert len(messages) == 10
    assert messages[0].find("EventIdentification/EventID").get("csd-code") == "110103"  # type: ignore[union-attr]

    db = Database(url)
    try:
        statement = (
            "UPDATE audit_event SET actor = 'someone-else' WHERE seq = 4"
            if tamper == "update"
            else "DELETE FROM audit_event WHERE seq = 4"
        )
        if not db.is_sqlite:
            # the trigger refuses it (and TRUNCATE) for any ordinary session...
            for refused in (statement, "TRUNCATE audit_event"):
                with pytest.raises(DBAPIError, match="append-only"):
                    async with db.write() as conn:
                        await conn.execute(text(refused))
            # ...so the attacker is the table's owner, switching the trigger off first
            async with db.write() as conn:
                await conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
        async with db.write() as conn:
            await conn.execute(text(statement))
    finally:
        await db.close()
    bad = _cli(url, tmp_path, "audit", "verify")
    assert bad.returncode == 1
    assert "TAMPERING DETECTED" in bad.stdout
    expected = "content changed" if tamper == "update" else "missing (rows removed)"
    assert expected in bad.stdout


async def test_concurrent_writers_keep_one_chain(
    fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Four writers (as four server processes would have: a database object, a connection pool
    and an in-process write lock each) append at once, each batch on the head the others left.

    None of them has to retry: on SQLite a writer takes the database's write lock before it reads
    the chain head, so no two read the same head (the UNIQUE ``seq`` would refuse the second).
    """
    url = fresh_database_url
    await migrate.upgrade(url)
    with caplog.at_level(logging.WARNING, logger="app.services.audit"):
        await asyncio.gather(*(_fill(url, 60) for _ in range(4)))
    assert [r.getMessage() for r in caplog.records] == []
    db = Database(url)
    audit = AuditLog(db)
    try:
        report = await audit.verify()
        assert report.problems == []
        assert report.rows == 240
    finally:
        await audit.close()
        await db.close()


async def test_back_pressure_never_drops(fresh_database_url: str) -> None:
    """A queue of one: callers wait for the writer instead of losing events."""
    url = fresh_database_url
    await migrate.upgrade(url)
    db = Database(url)
    audit = AuditLog(db, queue_size=1, batch_size=1)
    try:
        await asyncio.gather(
            *(audit.record(AuditRecord(action="search", outcome="success")) for _ in range(50))
        )
        await audit.flush()
        _, total = await audit.search(AuditFilter(action="search"), limit=1, offset=0)
        assert total == 50
        assert (await audit.verify()).ok
    finally:
        await audit.close()
        await db.close()


async def test_linger_gathers_events_into_few_transactions(fresh_database_url: str) -> None:
    """Events arriving within the linger share one transaction; none is lost or reordered."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=0.5, batch_size=1000)
    transactions = 0
    write = audit._write

    async def counted(batch: Any) -> None:
        nonlocal transactions
        transactions += 1
        await write(batch)

    audit._write = counted  # type: ignore[method-assign]
    try:
        for n in range(20):
            await audit.record(AuditRecord(action="search", outcome="success", count=n))
            await asyncio.sleep(0.005)
        await audit.flush()
        items, total = await audit.search(AuditFilter(action="search"), limit=100, offset=0)
        assert total == 20
        assert sorted(i["count"] for i in items) == list(range(20))
        assert transactions <= 2
    finally:
        await audit.close()
        await db.close()

"""``/admin/audit`` (issue 22, point 6): the trail filtered (posted: the filters may name a
patient), paged, exported, its chain verified; escaped; admins only."""

import csv
import io
import json
import uuid
from pathlib import Path

from tests.auth.helpers import auth_settings
from tests.web.archive import store_study, text_of
from tests.web.helpers import ALL, csrf_header, signed_in, web_client
from tests.web.test_headers import inline_code

HTMX = {"HX-Request": "true"}


async def test_filter_page_export_and_verify(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        # the audit trail outlives each test: this one's rows are its loader's
        loader = f"loader-{uuid.uuid4().hex[:8]}"
        study = await store_study(http, settings, by=loader, PatientID="AUD-1")
        for n in range(3):
            await store_study(http, settings, by=loader, PatientID=f"OTHER-{n}")
        session = await signed_in(http, services, subject="root", permissions=ALL)
        csrf = csrf_header(services, session)["X-CSRF-Token"]
        await services.audit.flush()
        page = await http.get("/admin/audit")
        assert page.status_code == 200
        assert inline_code(page.text) == []
        # the filter form posts: a patient ID never goes into a URL
        assert 'method="post" action="/admin/audit"' in page.text
        filtered = await http.post(
            "/admin/audit", data={"csrf_token": csrf, "patient": "AUD-1"}, headers=HTMX
        )
        assert filtered.status_code == 200
        text = text_of(filtered.text)
        assert "1 event, newest first" in text
        assert study in filtered.text
        assert "OTHER-" not in filtered.text
        # the export buttons follow the filters (swapped out of band)
        assert 'id="audit-export"' in filtered.text
        assert 'hx-swap-oob="true"' in filtered.text
        assert 'name="patient" value="AUD-1"' in filtered.text
        by_action = await http.post(
            "/admin/audit",
            data={"csrf_token": csrf, "action": "store", "actor": loader},
            headers=HTMX,
        )
        assert "4 events" in text_of(by_action.text)
        exported = await http.post(
            "/admin/audit/export",
            data={"csrf_token": csrf, "action": "store", "actor": loader, "format": "jsonl"},
        )
        assert exported.status_code == 200
        assert exported.headers["content-disposition"].startswith("attachment;")
        rows = [json.loads(line) for line in exported.text.splitlines()]
        assert len(rows) == 4
        assert {r["action"] for r in rows} == {"store"}
        assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)  # chain order
        as_csv = await http.post(
            "/admin/audit/export", data={"csrf_token": csrf, "patient": "AUD-1", "format": "csv"}
        )
        table = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert [r["patient_id"] for r in table] == ["AUD-1"]
        verified = await http.get("/admin/audit/verify", headers=HTMX)
        assert "intact" in verified.text
        # paging: a page holds 50
        for _ in range(50):
            await http.post("/admin/audit", data={"csrf_token": csrf}, headers=HTMX)
        await services.audit.flush()
        second = await http.post(
            "/admin/audit", data={"csrf_token": csrf, "page": "2"}, headers=HTMX
        )
        assert "Page 2 of" in text_of(second.text)
        bad = await http.post("/admin/audit", data={"csrf_token": csrf, "since": "last week"})
        assert bad.status_code == 400
        assert "a date and time" in bad.text


async def test_hostile_values_in_the_trail_are_text(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await services.audit.record(
            action="<script>alert(1)</script>",
            outcome="success",
            actor="<img src=x onerror=alert(2)>",
            patient_id="<b>P</b>",
            detail='"><svg onload=alert(3)>',
        )
        await services.audit.flush()
        await signed_in(http, services, permissions=ALL)
        page = await http.get("/admin/audit")
        for raw in ("<script>alert", "<img src=x", "<svg onload", "<b>P</b>"):
            assert raw not in page.text, raw
        assert "&lt;img src=x onerror=alert(2)&gt;" in page.text


async def test_only_admins(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        session = await signed_in(http, services, permissions=["read", "write", "delete"])
        csrf = csrf_header(services, session)["X-CSRF-Token"]
        assert 'href="/admin"' not in (await http.get("/")).text
        for method, path in (
            ("GET", "/admin"),
            ("GET", "/admin/audit"),
            ("POST", "/admin/audit"),
            ("POST", "/admin/audit/export"),
            ("GET", "/admin/audit/verify"),
            ("GET", "/admin/usage"),
            ("GET", "/admin/users"),
            ("GET", "/admin/shares"),
            ("GET", "/admin/dimse"),
        ):
            response = await http.request(
                method, path, data={"csrf_token": csrf} if method == "POST" else None
            )
            assert response.status_code == 403, (method, path)

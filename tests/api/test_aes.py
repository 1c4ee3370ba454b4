"""``/api/aes``: the remote AE registry over HTTP (admin only, audited, clear errors)."""

from pathlib import Path
from typing import Any

from app.services.audit import AuditFilter
from tests.auth.helpers import auth_client, auth_settings

ADMIN = ["admin"]


async def test_register_read_change_forget(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(
        database_url,
        tmp_path / "data",
        dimse={"remote_aes": [{"ae_title": "STATIC", "host": "10.0.0.9", "port": 104}]},
    )
    async with auth_client(settings) as (services, http, tokens):
        admin = tokens.headers(ADMIN, subject="ae-admin")
        created = await http.post(
            "/api/aes",
            json={"ae_title": "CT 1", "host": "ct1.example.org", "port": 104},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/api/aes/CT%201"
        assert created.json() == {
            "ae_title": "CT 1",
            "host": "ct1.example.org",
            "port": 104,
            "tls": False,
            "description": "",
            "source": "index",
        }
        listed = await http.get("/api/aes", headers=admin)
        assert [(e["ae_title"], e["source"]) for e in listed.json()["items"]] == [
            ("CT 1", "index"),
            ("STATIC", "settings"),
        ]
        one = await http.get(created.headers["location"], headers=admin)
        assert one.json()["host"] == "ct1.example.org"
        changed = await http.put(
            "/api/aes/CT%201",
            json={"host": "10.2.2.2", "port": 4104, "tls": True, "description": "room 1"},
            headers=admin,
        )
        assert changed.status_code == 200
        assert (await services.aes.require("CT 1")).port == 4104
        gone = await http.delete("/api/aes/CT%201", headers=admin)
        assert gone.status_code == 204
        assert (await http.get("/api/aes/CT%201", headers=admin)).status_code == 404

        await services.audit.flush()
        items, _ = await services.audit.search(AuditFilter(actor="ae-admin"), limit=100, offset=0)
        actions = [(i["action"], i["outcome"], i["status"]) for i in reversed(items)]
        assert actions == [
            ("ae-add", "success", 201),
            ("ae-read", "success", 200),
            ("ae-read", "success", 200),
            ("ae-update", "success", 200),
            ("ae-remove", "success", 204),
            ("ae-read", "failure", 404),
        ]
        details = {i["action"]: i["detail"] for i in items}
        assert details["ae-add"] == "ae-add CT 1 ct1.example.org:104"
        assert details["ae-update"] == "ae-update CT 1 10.2.2.2:4104"


async def test_only_admins_and_refusals_are_audited(database_url: str, tmp_path: Path) -> None:
    async with auth_client(auth_settings(database_url, tmp_path / "data")) as (
        services,
        http,
        tokens,
    ):
        body = {"ae_title": "CT1", "host": "10.0.0.1", "port": 104}
        assert (await http.post("/api/aes", json=body)).status_code == 401
        for scopes in (["read"], ["read", "write", "delete"]):
            denied = await http.post(
                "/api/aes", json=body, headers=tokens.headers(scopes, subject="ae-clerk")
            )
            assert denied.status_code == 403
            assert (await http.get("/api/aes", headers=tokens.headers(scopes))).status_code == 403
        assert await services.aes.list() == []
        await services.audit.flush()
        items, _ = await services.audit.search(AuditFilter(actor="ae-clerk"), limit=10, offset=0)
        assert {(i["action"], i["outcome"], i["status"]) for i in items} == {
            ("ae-add", "denied", 403)
        }


async def test_errors_are_clear_problem_documents(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(
        database_url,
        tmp_path / "data",
        dimse={"remote_aes": [{"ae_title": "STATIC", "host": "10.0.0.9", "port": 104}]},
    )
    async with auth_client(settings) as (_services, http, tokens):
        admin = tokens.headers(ADMIN)

        async def post(body: dict[str, Any]) -> tuple[int, str]:
            response = await http.post("/api/aes", json=body, headers=admin)
            assert response.headers["content-type"] == "application/problem+json"
            return response.status_code, response.json()["detail"]

        ok = {"ae_title": "CT1", "host": "10.0.0.1", "port": 104}
        assert (await http.post("/api/aes", json=ok, headers=admin)).status_code == 201
        assert await post(ok) == (409, "the remote AE 'CT1' is registered already")
        assert (await post({**ok, "ae_title": "STATIC"}))[0] == 409
        assert await post({**ok, "ae_title": "X" * 17}) == (
            400,
            "invalid AE title: at most 16 characters (PS3.5 AE VR), got 17",
        )
        assert await post({**ok, "ae_title": "NEW", "port": 70000}) == (
            400,
            "invalid port 70000: from 1 to 65535",
        )
        assert await post({**ok, "ae_title": "NEW", "host": "a b"}) == (
            400,
            "invalid host 'a b': not a host name or an IP address",
        )
        status, detail = await post({"ae_title": "NEW", "host": "h"})
        assert (status, detail.startswith("invalid request parameter body.port")) == (400, True)
        status, detail = await post({**ok, "ae_title": "NEW", "port": "many"})
        assert (status, detail.startswith("invalid request parameter body.port")) == (400, True)
        missing = await http.put("/api/aes/NOBODY", json={"host": "h", "port": 104}, headers=admin)
        assert (missing.status_code, missing.json()["detail"]) == (
            404,
            "no remote AE 'NOBODY' is registered",
        )
        assert (await http.delete("/api/aes/NOBODY", headers=admin)).status_code == 404
        static = await http.delete("/api/aes/STATIC", headers=admin)
        assert static.status_code == 409
        assert "defined in the settings" in static.json()["detail"]
        unknown = await http.get("/api/aes/NOBODY", headers=admin)
        assert unknown.status_code == 404
        assert "lightbox ae add" in unknown.json()["detail"]

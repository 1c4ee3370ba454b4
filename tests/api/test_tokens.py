"""The token registry's admin API: list, look up, revoke (admin only); a revoked token is
refused with 401 and the reason; the revocation is audited."""

from pathlib import Path

from app.services.audit import AuditFilter
from tests.auth.helpers import auth_client, auth_settings


async def test_list_and_revoke(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with auth_client(settings) as (services, http, tokens):
        admin = tokens.headers(["admin"], subject="root")
        victim = await services.tokens.issue("session", "alice", ["read"], 600)
        share = await services.tokens.issue("share", "guest", ["read"], 600, studies=["1.2.3"])
        bearer = {"Authorization": f"Bearer {victim.token}"}
        assert (await http.get("/dicom-web/studies", headers=bearer)).status_code == 204

        listed = await http.get("/api/tokens", headers=admin)
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert body["total"] == 2
        assert listed.headers["x-total-count"] == "2"
        assert {i["jti"]: i["kind"] for i in body["items"]} == {
            victim.record.jti: "session",
            share.record.jti: "share",
        }
        assert victim.token not in listed.text  # the registry never holds the token itself
        only = await http.get("/api/tokens", params={"kind": "share"}, headers=admin)
        assert [i["studies"] for i in only.json()["items"]] == [["1.2.3"]]
        one = await http.get(f"/api/tokens/{victim.record.jti}", headers=admin)
        assert (one.json()["subject"], one.json()["state"]) == ("alice", "active")

        revoked = await http.delete(
            f"/api/tokens/{victim.record.jti}", params={"reason": "lost"}, headers=admin
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["state"] == "revoked"
        assert (revoked.json()["revoked_by"], revoked.json()["revoke_reason"]) == ("root", "lost")
        refused = await http.get("/dicom-web/studies", headers=bearer)
        assert refused.status_code == 401
        assert refused.json()["detail"].startswith("the token was revoked at ")
        assert "the token was revoked at" in refused.headers["www-authenticate"]
        # revoking again is no error, and changes nothing
        again = await http.delete(f"/api/tokens/{victim.record.jti}", headers=admin)
        assert (again.status_code, again.json()["revoke_reason"]) == (200, "lost")
        states = await http.get("/api/tokens", params={"state": "revoked"}, headers=admin)
        assert [i["jti"] for i in states.json()["items"]] == [victim.record.jti]

        await services.audit.flush()
        rows, _ = await services.audit.search(
            AuditFilter(action="token-revoked", actor="root"), limit=5, offset=0
        )
        assert any(f"jti={victim.record.jti}" in (r["detail"] or "") for r in rows)
        assert rows[0]["status"] == 200


async def test_refusals(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with auth_client(settings) as (services, http, tokens):
        issued = await services.tokens.issue("cli", "alice", ["read"], 600)
        reader = tokens.headers(["read", "write", "delete"])
        admin = tokens.headers(["admin"])
        assert (await http.get("/api/tokens")).status_code == 401
        assert (await http.get("/api/tokens", headers=reader)).status_code == 403
        denied = await http.delete(f"/api/tokens/{issued.record.jti}", headers=reader)
        assert denied.status_code == 403
        assert (await services.tokens.get(issued.record.jti)).revoked_at is None
        unknown = await http.delete("/api/tokens/0123456789abcdef", headers=admin)
        assert unknown.status_code == 404
        assert "no token '0123456789abcdef' was issued here" in unknown.text
        assert (await http.get("/api/tokens/nope", headers=admin)).status_code == 404
        bad = await http.get("/api/tokens", params={"state": "zombie"}, headers=admin)
        assert bad.status_code == 400
        assert "query.state: Input should be 'active', 'revoked' or 'expired'" in bad.text
        too_long = await http.delete(
            f"/api/tokens/{issued.record.jti}", params={"reason": "x" * 300}, headers=admin
        )
        assert too_long.status_code == 400
        assert "query.reason" in too_long.text
        assert (await services.tokens.get(issued.record.jti)).revoked_at is None

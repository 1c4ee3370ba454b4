"""The token service: tokens recorded as issued, listed, revoked; the deny list every verifier
checks (this process at once, the others within the refresh interval); audited."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from pydicom.uid import generate_uid

from app.auth.factory import build_verifier
from app.auth.verify import InvalidToken
from app.config import Settings
from app.errors import BadRequest, NotFound, Unavailable
from app.index.db import Database
from app.services.audit import AuditFilter
from app.services.container import Services, open_services
from app.services.tokens import (
    RevocationList,
    TokenKind,
    TokenSearch,
    TokenService,
    TokenState,
    record_json,
)
from tests.conftest import make_settings


async def test_issue_records_then_verifies(services: Services, settings: Settings) -> None:
    issued = await services.tokens.issue(
        TokenKind.SHARE,
        " dr-who ",
        ["read", "read"],
        timedelta(days=7),
        studies=["1.2.3"],
        created_by="web:admin",
    )
    record = issued.record
    assert (record.kind, record.subject, record.scopes, record.study_uids) == (
        "share",
        "dr-who",
        ("read",),
        ("1.2.3",),
    )
    assert record.expires_at - record.issued_at.replace(microsecond=0) == timedelta(days=7)
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["jti"] == record.jti
    assert (claims["iat"], claims["exp"]) == (
        int(record.issued_at.timestamp()),
        int(record.expires_at.timestamp()),
    )
    assert claims[settings.auth.study_claim] == ["1.2.3"]
    verifier = build_verifier(settings, revocations=services.tokens.revocations)
    caller = await verifier.verify(issued.token)
    assert (caller.subject, caller.token_id, caller.study_uids) == (
        "dr-who",
        record.jti,
        frozenset({"1.2.3"}),
    )
    assert await services.tokens.get(record.jti) == record
    assert record_json(record)["state"] == "active"


async def test_claim_names_follow_the_settings(database_url: str, tmp_path: Path) -> None:
    """A deployment that renames the grant claims gets tokens its own verifier restricts."""
    from app.config import AuthSettings

    settings = make_settings(
        database_url,
        tmp_path / "data",
        auth=AuthSettings(enabled=False, study_claim="studies", patient_claim="patients"),
    )
    async with open_services(settings) as services:
        issued = await services.tokens.issue("share", "s", ["read"], 60, patients=["P1"])
        caller = await build_verifier(settings).verify(issued.token)
        assert caller.patient_ids == frozenset({"P1"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "bogus"}, "unknown token kind 'bogus'"),
        ({"subject": "  "}, "the subject must not be empty"),
        ({"subject": "a\x00b"}, "the subject must not contain control characters"),
        ({"subject": "x" * 300}, "the subject is longer than 256 characters"),
        ({"scopes": ["root"]}, "unknown scope root"),
        ({"scopes": []}, "a token needs at least one scope"),
        ({"ttl": 0}, "at least one second"),
        ({"ttl": timedelta(days=4000)}, "at most 3660 days"),
        ({"studies": ["1.2.x"]}, "not a StudyInstanceUID: '1.2.x'"),
        ({"patients": [""]}, "not a PatientID"),
        ({"patients": ["x" * 65]}, "not a PatientID"),
        ({"kind": "share"}, "a share token must name the studies or patients"),
    ],
)
async def test_issue_refuses_bad_input(
    services: Services, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"kind": "cli", "subject": "s", "scopes": ["read"], "ttl": 60}
    args.update(kwargs)
    with pytest.raises(BadRequest, match=message):
        await services.tokens.issue(**args)  # type: ignore[arg-type]
    assert (await services.tokens.list(TokenSearch()))[1] == 0  # nothing recorded


async def test_revoke_is_refused_at_once_here_and_soon_elsewhere(
    services: Services, settings: Settings
) -> None:
    """Two processes (two services on one index): the revoking one refuses the token at once,
    the other within its refresh interval, also when it had verified (cached) the token."""
    other = TokenService(services.db, services.audit, signer=None, refresh_seconds=0.3)
    here = build_verifier(settings, revocations=services.tokens.revocations)
    there = build_verifier(settings, revocations=other.revocations)
    issued = await services.tokens.issue("cli", "alice", ["read"], 600, created_by="cli:root")
    keep = await services.tokens.issue("cli", "bob", ["read"], 600)
    await here.verify(issued.token)
    await there.verify(issued.token)  # cached by the verifier, and the deny list read

    record = await services.tokens.revoke(issued.record.jti, by="admin", reason="left")
    assert record.state(datetime.now(UTC)) is TokenState.REVOKED
    with pytest.raises(InvalidToken, match="the token was revoked at"):
        await here.verify(issued.token)
    await asyncio.sleep(0.4)
    with pytest.raises(InvalidToken, match="the token was revoked at"):
        await there.verify(issued.token)
    assert (await there.verify(keep.token)).subject == "bob"

    again = await services.tokens.revoke(issued.record.jti, by="someone-else")
    assert (again.revoked_by, again.revoke_reason) == ("admin", "left")
    active, total = await services.tokens.list(TokenSearch(state=TokenState.ACTIVE))
    assert ([r.jti for r in active], total) == ([keep.record.jti], 1)

    with pytest.raises(NotFound, match="no token 'nope' was issued here"):
        await services.tokens.revoke("nope", by="admin")
    with pytest.raises(NotFound):
        await services.tokens.revoke("x" * 65, by="admin")
    with pytest.raises(NotFound):
        await services.tokens.get("nope")


async def test_issue_and_revoke_are_audited(services: Services) -> None:
    study = generate_uid()  # the audit trail is append-only: this test's rows are found by it
    issued = await services.tokens.issue(
        "share", "viewer", ["read"], 60, studies=[study], created_by="web:carol"
    )
    await services.tokens.revoke(issued.record.jti, by="web:dave", reason="sent by mistake")
    await services.tokens.revoke(issued.record.jti, by="web:dave")  # no second row
    await services.audit.flush()
    rows, _ = await services.audit.search(AuditFilter(study_uid=study), limit=10, offset=0)
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("token-revoked", "web:dave"),
        ("token-issued", "web:carol"),
    ]
    assert f"jti={issued.record.jti}" in rows[1]["detail"]
    assert "kind=share" in rows[1]["detail"]
    assert "reason=sent by mistake" in rows[0]["detail"]
    assert (await services.audit.verify()).problems == []


async def test_admin_exists(services: Services) -> None:
    assert not await services.tokens.admin_exists()
    issued = await services.tokens.issue("cli", "root", ["read", "admin"], 60)
    assert await services.tokens.admin_exists()
    await services.tokens.revoke(issued.record.jti, by="root")
    assert not await services.tokens.admin_exists()


async def test_no_issuer_without_the_embedded_key(database_url: str, tmp_path: Path) -> None:
    from app.config import AuthSettings

    settings = make_settings(
        database_url, tmp_path / "data", auth=AuthSettings(enabled=False, local_key=False)
    )
    async with open_services(settings) as services:
        with pytest.raises(Exception, match="the embedded issuer is off") as caught:
            await services.tokens.issue("cli", "s", ["read"], 60)
        assert getattr(caught.value, "http_status", None) == 409
    assert not (tmp_path / "data" / "auth").exists()


async def test_deny_list_when_the_index_cannot_be_read(services: Services) -> None:
    """Never read: 503 (tokens that cannot be checked are not served). Read once: the last set
    is kept while the index is away."""
    unreachable = Database("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    try:
        with pytest.raises(Unavailable, match="the revoked tokens cannot be read"):
            await RevocationList(unreachable).revoked("abc")
    finally:
        await unreachable.close()

    issued = await services.tokens.issue("cli", "alice", ["read"], 600)
    await services.tokens.revoke(issued.record.jti, by="admin")
    fresh = RevocationList(services.db, refresh_seconds=0)
    assert await fresh.revoked(issued.record.jti) is not None
    await services.db.close()  # the engine is disposed: later reads fail
    broken = Database("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    try:
        fresh._db = broken  # the same list, its index gone away
        assert await fresh.revoked(issued.record.jti) is not None
        assert await fresh.revoked("other") is None
    finally:
        await broken.close()

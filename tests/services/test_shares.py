"""Share links (``app.services.shares``) on the token registry, both databases."""

import pytest
from pydicom.uid import generate_uid

from app.auth.principal import Permission, Principal
from app.errors import BadRequest, Forbidden, NotFound
from app.services.audit import AuditFilter
from app.services.container import Services
from app.services.tokens import TokenKind, TokenState
from tests.factories import make_instance
from tests.ingested import store

ALICE = Principal("alice", frozenset({Permission.READ, Permission.WRITE}))
MALLORY = Principal("mallory", frozenset({Permission.READ, Permission.WRITE}))
ROOT = Principal("root", frozenset(Permission))


async def _study(services: Services) -> str:
    study = generate_uid()
    await store(services, make_instance(StudyInstanceUID=study, PatientID="SP-1"))
    return study


def visitor_of(token_jti: str, study: str) -> Principal:
    return Principal(
        "share:alice",
        frozenset({Permission.READ}),
        study_uids=frozenset({study}),
        token_id=token_jti,
    )


async def test_make_list_open_revoke(services: Services) -> None:
    study = await _study(services)
    shares = services.shares
    made = await shares.create(study, maker=ALICE, days=7, label="Dr Who")
    assert made.link.subject == "share:alice for Dr Who"
    assert made.link.study_uid == study
    assert made.link.state is TokenState.ACTIVE
    record = await services.tokens.get(made.link.jti)
    assert record.kind == TokenKind.SHARE.value
    assert record.scopes == ("read",)
    assert record.study_uids == (study,)
    assert [link.jti for link in (await shares.list(maker="alice")).links] == [made.link.jti]
    assert (await shares.list(maker="mallory")).links == []
    assert [link.jti for link in (await shares.list(maker=None)).links] == [made.link.jti]

    visitor = visitor_of(made.link.jti, study)
    expires = await shares.open(visitor, study, source="10.0.0.9")
    assert expires == made.link.expires_at
    with pytest.raises(Forbidden):
        await shares.open(visitor, generate_uid(), source="10.0.0.9")
    cli = await services.tokens.issue(TokenKind.CLI, "robot", ["read"], 60, studies=[study])
    with pytest.raises(Forbidden):  # a scoped token of the command line is no share link
        await shares.open(visitor_of(cli.record.jti, study), study, source=None)

    with pytest.raises(Forbidden):
        await shares.revoke(made.link.jti, by=MALLORY)
    with pytest.raises(NotFound):
        await shares.revoke(cli.record.jti, by=ROOT)
    revoked = await shares.revoke(made.link.jti, by=ALICE)
    assert revoked.state is TokenState.REVOKED
    assert (await shares.list(maker="alice", active_only=True)).links == []
    assert await services.tokens.revocations.revoked(made.link.jti) is not None

    await services.audit.flush()
    events, _ = await services.audit.search(AuditFilter(action="share-open"), limit=100, offset=0)
    # (the audit trail outlives each test: this test's events name its tokens)
    mine = (made.link.jti, cli.record.jti)
    opened = [e for e in events if any(f"jti={jti}" in (e["detail"] or "") for jti in mine)]
    assert sorted(e["outcome"] for e in opened) == ["denied", "denied", "success"]
    success = next(e for e in opened if e["outcome"] == "success")
    assert success["actor"] == "share:alice"
    assert success["patient_id"] == "SP-1"
    assert success["source"] == "10.0.0.9"


async def test_refusals(services: Services) -> None:
    study = await _study(services)
    shares = services.shares
    for days in (0, 91):
        with pytest.raises(BadRequest):
            await shares.create(study, maker=ALICE, days=days)
    with pytest.raises(BadRequest):
        await shares.create(study, maker=ALICE, days=1, label="x" * 65)
    with pytest.raises(NotFound):
        await shares.create(generate_uid(), maker=ALICE, days=1)
    scoped = Principal(
        "carol", frozenset({Permission.WRITE}), study_uids=frozenset({generate_uid()})
    )
    with pytest.raises(NotFound):  # a maker shares only what they may see
        await shares.create(study, maker=scoped, days=1)
    assert (await shares.list(maker=None)).total == 0

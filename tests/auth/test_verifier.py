"""TokenVerifier and ClaimMapping on their own (no HTTP)."""

import asyncio
from pathlib import Path

import pytest

from app.auth.keys import LocalSigningKey
from app.auth.principal import ClaimMapping, Permission
from app.auth.verify import InvalidToken, TokenIssuer, TokenVerifier


def _pair(tmp_path: Path, leeway: float = 0) -> tuple[TokenIssuer, TokenVerifier]:
    key, created = LocalSigningKey.load_or_create(tmp_path)
    assert created
    again, created_again = LocalSigningKey.load_or_create(tmp_path)
    assert not created_again
    assert again.kid == key.kid
    issuer = TokenIssuer(key, "lightbox", "lightbox")
    verifier = TokenVerifier(
        audience="lightbox", mapping=ClaimMapping(), local_key=key, leeway_seconds=leeway
    )
    return issuer, verifier


async def test_repeated_token_is_cached_but_never_past_its_expiry(tmp_path: Path) -> None:
    issuer, verifier = _pair(tmp_path)
    token = issuer.issue("alice", ["read"], ttl_seconds=1)
    first = await verifier.verify(token)
    assert first.subject == "alice"
    assert first.permissions == {Permission.READ}
    assert await verifier.verify(token) is first  # the cache answered
    await asyncio.sleep(1.2)
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)


async def test_grants_from_the_token(tmp_path: Path) -> None:
    issuer, verifier = _pair(tmp_path)
    share = await verifier.verify(issuer.issue("s", ["read"], 60, study_uids=["1.2.3"]))
    restriction = share.restriction()
    assert restriction is not None
    assert restriction.allows("1.2.3", None)
    assert not restriction.allows("1.2.4", None)
    assert share.token_id is not None


def test_claim_mapping_variants() -> None:
    mapping = ClaimMapping(
        permission_claims=("scope", "realm_access.roles"),
        values={
            "user/ImagingStudy.read": Permission.READ,
            "pacs-admin": Permission.ADMIN,
        },
    )
    principal = mapping.principal(
        {
            "sub": "u",
            "azp": "ohif",
            "scope": "openid user/ImagingStudy.read",
            "realm_access": {"roles": ["pacs-admin"]},
        }
    )
    assert principal.permissions == {Permission.READ, Permission.ADMIN}
    assert principal.client_id == "ohif"
    assert not principal.restricted
    # a grant claim that is present but empty grants nothing, not everything
    empty = ClaimMapping().principal({"sub": "u", "scope": "read", "lightbox_studies": []})
    assert empty.restricted
    restriction = empty.restriction()
    assert restriction is not None
    assert not restriction.allows("1.2.3", "P")
    # the permission claim of the wrong type grants nothing
    odd = ClaimMapping().principal({"sub": "u", "scope": {"read": True}})
    assert odd.permissions == frozenset()

"""Session tokens (app.auth.sessions): claims the API's verifier accepts, idle and absolute
timeouts, renewal, CSRF tokens bound to the session, sealed values the verifier refuses."""

import time
from pathlib import Path

import jwt
import pytest

from app.auth.keys import LocalSigningKey
from app.auth.principal import ClaimMapping, Permission
from app.auth.sessions import (
    LOCAL_IDP,
    SESSION_KIND,
    NotASession,
    SessionPolicy,
    SessionSigner,
    permission_claims,
)
from app.auth.verify import InvalidToken, TokenIssuer, TokenVerifier

IDLE, ABSOLUTE = 600, 3600
READ_WRITE = frozenset({Permission.READ, Permission.WRITE})


def _key(tmp_path: Path) -> LocalSigningKey:
    return LocalSigningKey.load_or_create(tmp_path)[0]


def _signer(key: LocalSigningKey, mapping: ClaimMapping | None = None) -> SessionSigner:
    return SessionSigner(
        key,
        issuer="lightbox",
        audience="lightbox",
        mapping=mapping or ClaimMapping(),
        policy=SessionPolicy(IDLE, ABSOLUTE),
    )


def _verifier(key: LocalSigningKey, mapping: ClaimMapping | None = None) -> TokenVerifier:
    return TokenVerifier(
        audience="lightbox", mapping=mapping or ClaimMapping(), local_key=key, leeway_seconds=0
    )


async def test_a_session_token_is_verified_by_the_api_verifier(tmp_path: Path) -> None:
    key = _key(tmp_path)
    signer = _signer(key)
    token, claims = signer.issue("alice", READ_WRITE, name="Alice A.", idp=LOCAL_IDP)
    principal = await _verifier(key).verify(token)
    assert principal.subject == "alice"
    assert principal.permissions == READ_WRITE
    assert principal.token_id == claims.session_id
    raw = jwt.decode(token, options={"verify_signature": False})
    assert raw["kind"] == SESSION_KIND
    assert raw["exp"] - raw["iat"] == IDLE
    read = signer.read(token, principal.permissions)
    assert read == claims
    assert read.name == "Alice A."


async def test_permissions_round_trip_through_an_identity_providers_mapping(
    tmp_path: Path,
) -> None:
    """With the claims configured for Keycloak (realm roles, custom names), a session's token
    still reads back as the user's permissions."""
    mapping = ClaimMapping(
        permission_claims=("realm_access.roles",),
        values={"pacs-reader": Permission.READ, "pacs-admin": Permission.ADMIN},
    )
    key = _key(tmp_path)
    token, _ = _signer(key, mapping).issue(
        "bob", [Permission.ADMIN, Permission.READ], name="bob", idp=LOCAL_IDP
    )
    principal = await _verifier(key, mapping).verify(token)
    assert principal.permissions == {Permission.READ, Permission.ADMIN}
    with pytest.raises(ValueError, match="no claim value is configured for write"):
        permission_claims(mapping, [Permission.WRITE])


async def test_idle_timeout(tmp_path: Path) -> None:
    key = _key(tmp_path)
    signer = _signer(key)
    now = time.time()
    stale, _ = signer.issue("alice", READ_WRITE, name="a", idp=LOCAL_IDP, now=now - IDLE - 1)
    with pytest.raises(InvalidToken, match="expired"):
        await _verifier(key).verify(stale)
    fresh, _ = signer.issue("alice", READ_WRITE, name="a", idp=LOCAL_IDP, now=now - IDLE + 5)
    assert (await _verifier(key).verify(fresh)).subject == "alice"


def test_renewal_is_due_after_a_tenth_of_the_idle_time(tmp_path: Path) -> None:
    signer = _signer(_key(tmp_path))
    start = 1_000_000.0
    _, claims = signer.issue("alice", READ_WRITE, name="a", idp=LOCAL_IDP, now=start)
    assert signer.policy.refresh_after == IDLE // 10
    assert not signer.renewal_due(claims, start + IDLE // 10 - 1)
    assert signer.renewal_due(claims, start + IDLE // 10)
    token, renewed = signer.renew(claims, now=start + 100)
    assert renewed.session_id == claims.session_id
    assert renewed.auth_time == claims.auth_time
    assert renewed.expires_at == start + 100 + IDLE
    assert signer.csrf_token(renewed.session_id) == signer.csrf_token(claims.session_id)
    assert jwt.decode(token, options={"verify_signature": False})["jti"] == claims.session_id


async def test_absolute_timeout_bounds_every_renewal(tmp_path: Path) -> None:
    key = _key(tmp_path)
    signer = _signer(key)
    start = time.time() - ABSOLUTE + 100  # signed in almost an absolute timeout ago
    _, claims = signer.issue("alice", READ_WRITE, name="a", idp=LOCAL_IDP, now=start)
    token, renewed = signer.renew(claims, now=time.time())
    assert renewed.expires_at == int(start) + ABSOLUTE  # not now + IDLE
    assert (await _verifier(key).verify(token)).subject == "alice"
    assert not signer.renewal_due(renewed, time.time() + 99)  # nothing left to extend
    # signed in longer ago than the absolute timeout: its latest renewal (used 20 s ago) is over
    _, old = signer.issue("alice", READ_WRITE, name="a", idp=LOCAL_IDP, now=time.time() - 3700)
    latest, _ = signer.renew(old, now=time.time() - 20)
    with pytest.raises(InvalidToken, match="expired"):
        await _verifier(key).verify(latest)


def test_only_session_tokens_are_sessions(tmp_path: Path) -> None:
    key = _key(tmp_path)
    signer = _signer(key)
    bearer = TokenIssuer(key, "lightbox", "lightbox").issue("script", ["read"], 600)
    with pytest.raises(NotASession):
        signer.read(bearer, {Permission.READ})
    with pytest.raises(NotASession):
        signer.read("not a token", set())


def test_csrf_tokens_are_bound_to_the_session(tmp_path: Path) -> None:
    signer = _signer(_key(tmp_path))
    _, one = signer.issue("alice", READ_WRITE, name="a", idp=LOCAL_IDP)
    _, two = signer.issue("alice", READ_WRITE, name="a", idp=LOCAL_IDP)
    token = signer.csrf_token(one.session_id)
    assert signer.csrf_valid(one.session_id, token)
    assert not signer.csrf_valid(two.session_id, token)  # another session's token
    assert not signer.csrf_valid(one.session_id, None)
    assert not signer.csrf_valid(one.session_id, "")
    assert not signer.csrf_valid(one.session_id, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not signer.csrf_valid(one.session_id, "é" + token)  # not even ASCII
    # another server's key gives other tokens
    other = _signer(_key(tmp_path / "other"))
    assert not other.csrf_valid(one.session_id, token)
    # the login form's token is bound to its nonce, and is no session's token
    login = signer.login_csrf_token("nonce-1")
    assert signer.login_csrf_valid("nonce-1", login)
    assert not signer.login_csrf_valid("nonce-2", login)
    assert not signer.login_csrf_valid(None, login)
    assert not signer.csrf_valid("nonce-1", login)


async def test_sealed_values_are_for_their_purpose_only(tmp_path: Path) -> None:
    key = _key(tmp_path)
    signer = _signer(key)
    sealed = signer.seal("oidc-login", {"state": "s1", "nonce": "n1"}, 600)
    assert signer.unseal("oidc-login", sealed)["state"] == "s1"
    with pytest.raises(ValueError, match="invalid or expired"):
        signer.unseal("something-else", sealed)
    with pytest.raises(ValueError, match="invalid or expired"):
        signer.unseal("oidc-login", signer.seal("oidc-login", {}, -10))
    with pytest.raises(InvalidToken):  # never a bearer token
        await _verifier(key).verify(sealed)


def test_policy_bounds() -> None:
    with pytest.raises(ValueError, match="idle"):
        SessionPolicy(30, 3600)
    with pytest.raises(ValueError, match="absolute"):
        SessionPolicy(3600, 600)

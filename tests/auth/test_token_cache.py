"""The verified-token cache of TokenVerifier: it saves the signature check of a repeated token,
never serves a token past its expiry, never serves an altered token, and stays bounded."""

import base64
import json
import time
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import pytest

from app.auth.keys import LocalSigningKey
from app.auth.principal import ClaimMapping
from app.auth.verify import InvalidToken, TokenIssuer, TokenVerifier


def _pair(tmp_path: Path, **options: Any) -> tuple[TokenIssuer, TokenVerifier]:
    key, _ = LocalSigningKey.load_or_create(tmp_path)
    verifier = TokenVerifier(
        audience="lightbox",
        mapping=ClaimMapping(),
        local_key=key,
        **options,
    )
    return TokenIssuer(key, "lightbox", "lightbox"), verifier


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Clock:
    """time.time() under the test's control."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("app.auth.verify.time.time", clock)
    # PyJWT checks exp/nbf against its own clock: keep it on ours
    monkeypatch.setattr("jwt.api_jwt.datetime", _frozen_datetime(clock))
    return clock


def _frozen_datetime(clock: Clock) -> type[datetime]:
    """``datetime`` whose ``now()`` reads the test clock (PyJWT's exp/nbf checks call it)."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> "Frozen":
            moment = datetime.fromtimestamp(clock(), tz=tz or UTC)
            return cls.fromtimestamp(moment.timestamp(), tz=moment.tzinfo)

    return Frozen


async def test_a_cached_token_is_refused_once_expired(tmp_path: Path, clock: Clock) -> None:
    issuer, verifier = _pair(tmp_path, leeway_seconds=0)
    token = issuer.issue("alice", ["read"], ttl_seconds=60, now=clock.now)
    first = await verifier.verify(token)
    clock.now += 59
    assert await verifier.verify(token) is first  # still valid: the cache answers
    clock.now += 2
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)
    with pytest.raises(InvalidToken, match="expired"):  # and it stays refused
        await verifier.verify(token)


async def test_the_leeway_is_the_same_cached_or_not(tmp_path: Path, clock: Clock) -> None:
    issuer, verifier = _pair(tmp_path, leeway_seconds=30)
    token = issuer.issue("alice", ["read"], ttl_seconds=60, now=clock.now)
    first = await verifier.verify(token)
    clock.now += 60 + 29
    assert await verifier.verify(token) is first
    clock.now += 2
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)


async def test_a_token_not_yet_valid_is_not_cached(tmp_path: Path, clock: Clock) -> None:
    issuer, verifier = _pair(tmp_path, leeway_seconds=0)
    token = issuer.issue("alice", ["read"], ttl_seconds=600, now=clock.now + 120)
    for _ in range(2):
        with pytest.raises(InvalidToken, match="not valid yet"):
            await verifier.verify(token)
    clock.now += 121
    assert (await verifier.verify(token)).subject == "alice"


async def test_an_altered_token_is_never_served_from_the_cache(tmp_path: Path) -> None:
    issuer, verifier = _pair(tmp_path)
    token = issuer.issue("alice", ["read"], ttl_seconds=600)
    assert (await verifier.verify(token)).subject == "alice"  # now cached
    header, payload, signature = token.split(".")

    # the same claims with another signature (another key's, or bytes flipped)
    other_key, _ = LocalSigningKey.load_or_create(tmp_path / "other")
    foreign = TokenIssuer(
        LocalSigningKey(other_key.private_key, LocalSigningKey.load_or_create(tmp_path)[0].kid),
        "lightbox",
        "lightbox",
    ).issue("alice", ["read"], ttl_seconds=600)
    raw = bytearray(_unb64(signature))
    raw[5] ^= 0x01
    flipped = f"{header}.{payload}.{_b64(bytes(raw))}"
    # more rights claimed under the cached token's signature
    claims = json.loads(_unb64(payload))
    claims["scope"] = "read write delete admin"
    escalated = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    for forged in (foreign, flipped, escalated, f"{header}.{payload}.", f"{header}.{payload}"):
        with pytest.raises(InvalidToken):
            await verifier.verify(forged)
    # the genuine token is still served, unchanged
    assert (await verifier.verify(token)).permissions == {"read"}


async def test_the_cache_is_bounded(tmp_path: Path) -> None:
    issuer, verifier = _pair(tmp_path, cache_size=8)
    tokens = [issuer.issue(f"user{i}", ["read"], ttl_seconds=600) for i in range(20)]
    principals = [await verifier.verify(t) for t in tokens]
    assert len(verifier._cache) == 8
    # the newest are kept, the oldest went first; an evicted token is verified again, correctly
    assert await verifier.verify(tokens[-1]) is principals[-1]
    again = await verifier.verify(tokens[0])
    assert again is not principals[0]
    assert again == principals[0]
    assert len(verifier._cache) == 8


async def test_no_cache_when_its_size_is_zero(tmp_path: Path) -> None:
    issuer, verifier = _pair(tmp_path, cache_size=0)
    token = issuer.issue("alice", ["read"], ttl_seconds=600)
    first = await verifier.verify(token)
    second = await verifier.verify(token)
    assert first == second
    assert first is not second
    assert not verifier._cache

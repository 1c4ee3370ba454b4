"""Forged, expired and malformed tokens are all refused with 401, never a 500 (GEN-06)."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.auth.keys import LocalSigningKey
from tests.auth.helpers import auth_client, auth_settings

STUDIES = "/dicom-web/studies"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(signature)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "lightbox",
        "aud": "lightbox",
        "sub": "mallory",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "scope": "read write delete admin",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def forgeries(key: LocalSigningKey) -> dict[str, str]:
    """Token name -> token; each must be refused."""
    kid = key.kid
    other_ec = ec.generate_private_key(ec.SECP256R1())
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    hs_input = (
        _b64(json.dumps(hs_header).encode()) + "." + _b64(json.dumps(_claims()).encode())
    ).encode()
    hs_signature = hmac.new(public_pem, hs_input, hashlib.sha256).digest()
    sign: Callable[..., str] = jwt.encode
    good = key.private_key
    past = int(time.time()) - 3600
    return {
        "wrong key": sign(_claims(), other_ec, algorithm="ES256", headers={"kid": kid}),
        "alg none": _unsigned({"alg": "none", "typ": "JWT", "kid": kid}, _claims()),
        "alg None": _unsigned({"alg": "None", "kid": kid}, _claims()),
        "HS256 with the public key": hs_input.decode() + "." + _b64(hs_signature),
        "RS256 from another key": sign(
            _claims(), other_rsa, algorithm="RS256", headers={"kid": kid}
        ),
        "expired": sign(
            _claims(exp=past, iat=past - 60, nbf=past - 60), good, "ES256", {"kid": kid}
        ),
        "not yet valid": sign(_claims(nbf=int(time.time()) + 3600), good, "ES256", {"kid": kid}),
        "wrong iss": sign(_claims(iss="https://evil.example"), good, "ES256", {"kid": kid}),
        "wrong aud": sign(_claims(aud="another-service"), good, "ES256", {"kid": kid}),
        "no aud": sign(_claims(aud=None), good, "ES256", {"kid": kid}),
        "no exp": sign(_claims(exp=None), good, "ES256", {"kid": kid}),
        "unknown kid": sign(_claims(), good, "ES256", {"kid": "rotated-away"}),
        "no kid": sign(_claims(), good, "ES256"),
        "garbage": "this-is-not-a-token",
        "three garbage parts": "abc.def.ghi",
        "bad base64 payload": _b64(b'{"alg":"ES256"}') + ".%%%." + _b64(b"x"),
        "payload not an object": _b64(b'{"alg":"ES256"}') + "." + _b64(b"[1,2]") + ".c2ln",
        "oversized": "a" * 9000 + "." + "b" * 9000 + "." + "c" * 100,
        "oversized header": _b64(json.dumps({"alg": "ES256", "x": "y" * 20000}).encode())
        + "."
        + _b64(json.dumps(_claims()).encode())
        + ".c2ln",
    }


@pytest.mark.parametrize(
    "name",
    list(forgeries(LocalSigningKey(ec.generate_private_key(ec.SECP256R1()), "kid")).keys()),
)
async def test_forged_token_is_401(database_url: str, tmp_path: Path, name: str) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with auth_client(settings) as (_services, http, tokens):
        key, _ = LocalSigningKey.load_or_create(settings.data_dir)
        token = forgeries(key)[name]
        response = await http.get(STUDIES, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, response.text
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer")
        assert 'error="invalid_token"' in challenge
        # the genuine article works on the same app
        ok = await http.get(STUDIES, headers=tokens.headers(["read"]))
        assert ok.status_code == 204


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc", "bearer", "Bearer a b c"],
)
async def test_malformed_authorization_header_is_401(
    database_url: str, tmp_path: Path, header: str
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with auth_client(settings) as (_services, http, _tokens):
        response = await http.get(STUDIES, headers={"Authorization": header})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_leeway_and_scheme_case(database_url: str, tmp_path: Path) -> None:
    """Clock skew within the leeway is tolerated; the scheme is case-insensitive (RFC 6750)."""
    settings = auth_settings(database_url, tmp_path / "data", leeway_seconds=30)
    async with auth_client(settings) as (_services, http, _tokens):
        key, _ = LocalSigningKey.load_or_create(settings.data_dir)
        slightly_early = jwt.encode(
            _claims(nbf=int(time.time()) + 10), key.private_key, "ES256", {"kid": key.kid}
        )
        response = await http.get(STUDIES, headers={"Authorization": f"bearer {slightly_early}"})
        assert response.status_code == 204

"""An external OpenID Connect issuer: discovery + JWKS over HTTP on 127.0.0.1, keys rotated."""

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from app.services.audit import AuditFilter
from tests.auth.helpers import auth_client, auth_settings

STUDIES = "/dicom-web/studies"


class Issuer:
    """A minimal identity provider: discovery document and a JWKS that the test can rotate."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []
        self.fetches: dict[str, int] = {"discovery": 0, "jwks": 0}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/realms/pacs/.well-known/openid-configuration":
                    issuer.fetches["discovery"] += 1
                    body: Any = {"issuer": issuer.url, "jwks_uri": f"{issuer.base}/certs"}
                elif self.path == "/certs":
                    issuer.fetches["jwks"] += 1
                    body = {"keys": [issuer.jwk(kid) for kid in issuer.published]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/realms/pacs"

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self, kid: str) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}

    def token(self, kid: str, roles: list[str], **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.url,
            "aud": "lightbox-pacs",
            "sub": "f3c1-user",
            "azp": "ohif",
            "exp": now + 300,
            "iat": now,
            "realm_access": {"roles": roles},
            **claims,
        }
        return jwt.encode(payload, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    idp = Issuer()
    thread = threading.Thread(target=idp.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        idp.server.shutdown()
        idp.server.server_close()
        thread.join(timeout=5)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_jwks_fetch_cache_and_rotation(
    database_url: str, tmp_path: Path, issuer: Issuer
) -> None:
    issuer.add_key("k1")
    issuer.add_key("k2")
    issuer.published = ["k1"]
    settings = auth_settings(
        database_url,
        tmp_path / "data",
        oidc_issuer=issuer.url,
        oidc_allow_http=True,
        oidc_audience="lightbox-pacs",
        jwks_min_refresh_seconds=1.0,
        permission_claims=["realm_access.roles"],
        read_values=["pacs-reader"],
    )
    async with auth_client(settings) as (services, http, _tokens):
        # Keycloak-style roles map to permissions; the role the mapping does not know grants none
        ok = await http.get(STUDIES, headers=_bearer(issuer.token("k1", ["pacs-reader"])))
        assert ok.status_code == 204
        assert issuer.fetches == {"discovery": 1, "jwks": 1}
        denied = await http.get(STUDIES, headers=_bearer(issuer.token("k1", ["other"])))
        assert denied.status_code == 403
        for _ in range(5):  # cached: no more fetches
            again = await http.get(STUDIES, headers=_bearer(issuer.token("k1", ["pacs-reader"])))
            assert again.status_code == 204
        assert issuer.fetches["jwks"] == 1

        await asyncio.sleep(1.1)
        issuer.published = ["k2"]  # the issuer rotates its key
        rotated = await http.get(STUDIES, headers=_bearer(issuer.token("k2", ["pacs-reader"])))
        assert rotated.status_code == 204
        assert issuer.fetches["jwks"] == 2

        # the retired key and made-up kids are refused, and cannot make us hammer the issuer
        old = await http.get(STUDIES, headers=_bearer(issuer.token("k1", ["pacs-reader"])))
        assert old.status_code == 401
        issuer.add_key("made-up")
        for _ in range(10):
            bogus = await http.get(
                STUDIES, headers=_bearer(issuer.token("made-up", ["pacs-reader"]))
            )
            assert bogus.status_code == 401
        assert issuer.fetches["jwks"] == 2

        # wrong audience from the right issuer
        wrong_aud = await http.get(
            STUDIES, headers=_bearer(issuer.token("k2", ["pacs-reader"], aud="someone-else"))
        )
        assert wrong_aud.status_code == 401

        # the actor in the audit trail is the token's subject and client
        await services.audit.flush()
        items, _total = await services.audit.search(
            AuditFilter(actor="f3c1-user"),
            limit=100,
            offset=0,
        )
        assert items
        assert all(item["client_id"] == "ohif" for item in items)


async def test_issuer_unreachable_is_401_not_500(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(
        database_url,
        tmp_path / "data",
        oidc_issuer="http://127.0.0.1:9/realms/none",  # discard port: nothing listens
        oidc_allow_http=True,
    )
    async with auth_client(settings) as (_services, http, _tokens):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(
            {"iss": "http://127.0.0.1:9/realms/none", "aud": "lightbox", "exp": time.time() + 60},
            key,
            algorithm="RS256",
            headers={"kid": "x"},
        )
        response = await http.get(STUDIES, headers=_bearer(token))
        assert response.status_code == 401
        assert "cannot be fetched" in response.headers["www-authenticate"]


def test_http_issuer_refused_unless_allowed() -> None:
    from app.auth.keys import OidcKeys

    with pytest.raises(ValueError, match="https"):
        OidcKeys("http://idp.example/realms/x")
    assert OidcKeys("https://idp.example/realms/x").issuer == "https://idp.example/realms/x"


async def test_issuer_algorithm_confusion_refused(
    database_url: str, tmp_path: Path, issuer: Issuer
) -> None:
    import base64
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    issuer.add_key("k1")
    issuer.published = ["k1"]
    settings = auth_settings(
        database_url,
        tmp_path / "data",
        oidc_issuer=issuer.url,
        oidc_allow_http=True,
        oidc_audience="lightbox-pacs",
        oidc_algorithms=["RS256", "ES256", "HS256"],  # HS* is dropped even when configured
    )
    claims = {
        "iss": issuer.url,
        "aud": "lightbox-pacs",
        "sub": "x",
        "exp": int(time.time()) + 60,
        "scope": "read",
    }
    public_pem = (
        issuer.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
        + "."
        + b64(json.dumps(claims).encode())
    )
    hs = (
        signing_input
        + "."
        + b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    )
    es = jwt.encode(
        claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "k1"}
    )
    async with auth_client(settings) as (_services, http, _tokens):
        good = await http.get(STUDIES, headers=_bearer(issuer.token("k1", ["read"], scope="read")))
        assert good.status_code == 204
        for forged in (hs, es):
            response = await http.get(STUDIES, headers=_bearer(forged))
            assert response.status_code == 401

"""Where verification keys come from: the embedded signing key, or an OpenID Connect issuer.

The embedded default keeps one EC P-256 private key (ES256) in the data directory, created on
first start with mode 0600; ``lightbox token create`` signs with it. An external issuer is found
through its discovery document (``/.well-known/openid-configuration``); its JWKS is cached for
``cache_seconds`` and fetched again when a token names an unknown ``kid`` (key rotation), at most
once per ``min_refresh_seconds`` so that tokens with made-up kids cannot hammer the issuer.
"""

import asyncio
import base64
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt import PyJWK
from jwt.exceptions import PyJWKError

__all__ = ["KeyUnavailable", "LocalSigningKey", "OidcKeys", "UnknownKey"]

log = logging.getLogger(__name__)

LOCAL_ALGORITHM = "ES256"
KEY_FILE = "signing-key.pem"


class UnknownKey(Exception):
    """The token names a key the issuer does not (or no longer) publish."""


class KeyUnavailable(Exception):
    """The issuer's keys cannot be fetched right now."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class LocalSigningKey:
    """The embedded issuer's key pair; ``kid`` is its RFC 7638 thumbprint."""

    private_key: ec.EllipticCurvePrivateKey
    kid: str

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @classmethod
    def path_in(cls, data_dir: Path) -> Path:
        return data_dir / "auth" / KEY_FILE

    @classmethod
    def exists(cls, data_dir: Path) -> bool:
        return cls.path_in(data_dir).is_file()

    @classmethod
    def load_or_create(cls, data_dir: Path) -> "tuple[LocalSigningKey, bool]":
        """The key in ``data_dir`` (created atomically if missing) and whether it was created."""
        path = cls.path_in(data_dir)
        created = False
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, path)  # fails if another process won the race: use theirs
                created = True
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC private key")
        return cls(loaded, _thumbprint(loaded.public_key())), created


def _thumbprint(public: ec.EllipticCurvePublicKey) -> str:
    numbers = public.public_numbers()
    jwk = {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
    return _b64(hashlib.sha256(canonical).digest())


class OidcKeys:
    """An OpenID Connect issuer's signing keys (discovery + JWKS), cached."""

    def __init__(
        self,
        issuer: str,
        *,
        jwks_uri: str | None = None,
        allow_http: bool = False,
        cache_seconds: float = 3600,
        min_refresh_seconds: float = 30,
        timeout: float = 5,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self._jwks_uri = jwks_uri
        self._allow_http = allow_http
        self._cache_seconds = cache_seconds
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout
        self._keys: dict[str, PyJWK] = {}
        #: bumped whenever the published key set changes (verified-token caches key on it)
        self.generation = 0
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        for url in (self.issuer, jwks_uri):
            if url is not None:
                self._check_scheme(url)

    def _check_scheme(self, url: str) -> None:
        if not url.startswith("https://") and not (self._allow_http and url.startswith("http://")):
            raise ValueError(f"OpenID Connect URLs must be https:// (got {url})")

    async def key(self, kid: str | None) -> PyJWK:
        """The key ``kid`` names (the only key when the token names none and there is one)."""
        now = time.monotonic()
        if now - self._fetched_at > self._cache_seconds:
            await self._refresh(force=True)
        found = self._lookup(kid)
        if found is None:
            await self._refresh(force=False)
            found = self._lookup(kid)
        if found is None:
            raise UnknownKey(f"no key {kid!r} published by {self.issuer}")
        return found

    def _lookup(self, kid: str | None) -> PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < (
                self._min_refresh if not force else min(self._min_refresh, self._cache_seconds)
            ):
                return  # someone refreshed meanwhile, or too soon after the last fetch
            try:
                async with httpx.AsyncClient(timeout=self._timeout) as client:
                    if self._jwks_uri is None:
                        discovery = await self._get_json(
                            client, f"{self.issuer}/.well-known/openid-configuration"
                        )
                        uri = discovery.get("jwks_uri")
                        if not isinstance(uri, str):
                            raise KeyUnavailable("the discovery document names no jwks_uri")
                        self._check_scheme(uri)
                        self._jwks_uri = uri
                    jwks = await self._get_json(client, self._jwks_uri)
            except (httpx.HTTPError, ValueError) as exc:
                self._fetched_at = time.monotonic()  # rate-limit retries against a failing issuer
                log.warning("cannot fetch the keys of %s: %s", self.issuer, exc)
                if self._keys:
                    return  # keep serving the cached keys
                raise KeyUnavailable(f"cannot fetch the keys of {self.issuer}") from exc
            keys = _parse_jwks(jwks)
            if set(keys) != set(self._keys) or any(
                keys[k].key_id != self._keys[k].key_id for k in keys
            ):
                self.generation += 1
            self._keys = keys
            self._fetched_at = time.monotonic()
            log.info("fetched %d signing keys of %s", len(self._keys), self.issuer)

    @staticmethod
    async def _get_json(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
        response = await client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return body


def _parse_jwks(jwks: dict[str, Any]) -> dict[str, PyJWK]:
    keys: dict[str, PyJWK] = {}
    for index, entry in enumerate(jwks.get("keys") or []):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            jwk = PyJWK(entry)
        except PyJWKError as exc:
            log.warning("skipping a JWKS key the verifier cannot use: %s", exc)
            continue
        keys[str(entry.get("kid", f"#{index}"))] = jwk
    return keys

"""Signing in with an OpenID Connect issuer: the authorization code flow with PKCE (OpenID
Connect Core 1.0 §3.1, RFC 7636), as a relying party (issue 22, point 1).

:meth:`OidcClient.authorization_url` sends the browser to the issuer with a ``state`` (bound to
the browser by the caller), a ``nonce`` and an S256 code challenge; :meth:`OidcClient.exchange`
trades the code for tokens at the token endpoint with the code verifier (and the client's secret
when it has one); :meth:`OidcClient.verify_id_token` checks the ID token (§3.1.3.7): signature by
a key the issuer publishes (the JWKS, cached, :class:`~app.auth.keys.OidcKeys`), an algorithm
from the configured list matching that key, ``iss`` exactly the issuer's, ``aud`` naming this
client (and ``azp`` when it names others too), ``exp``/``iat``, and the ``nonce``. No library
beyond httpx and PyJWT, which the API's verifier uses already.
"""

import base64
import hashlib
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import httpx
import jwt

from app.auth.keys import KeyUnavailable, OidcKeys, UnknownKey

__all__ = [
    "OidcClient",
    "OidcError",
    "ProviderMetadata",
    "TokenResponse",
    "code_challenge",
    "new_code_verifier",
    "random_token",
]

#: the longest answer read from the issuer (a token response, a discovery document)
_MAX_RESPONSE: Final = 256 * 1024
_FAMILIES: Final = {"RSA": ("RS", "PS"), "EC": ("ES",), "OKP": ("Ed",)}


class OidcError(Exception):
    """The sign-in with the issuer failed; the message says why (for the log and the audit
    trail; the person is shown a short version)."""


def random_token() -> str:
    """A ``state`` or ``nonce``: 256 random bits."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """A PKCE code verifier (RFC 7636 §4.1: 43 to 128 unreserved characters; here 64)."""
    return secrets.token_urlsafe(48)


def code_challenge(verifier: str) -> str:
    """The S256 challenge of a verifier (RFC 7636 §4.2).

    >>> code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")  # RFC 7636 Appendix B
    'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'
    """
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What the issuer's discovery document says that the flow needs."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str


@dataclass(frozen=True, slots=True)
class TokenResponse:
    id_token: str
    access_token: str | None


class OidcClient:
    """This server as a relying party of one issuer."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        *,
        keys: OidcKeys,
        client_secret: str | None = None,
        client_auth: str = "client_secret_basic",
        scopes: Sequence[str] = ("openid", "profile", "email"),
        algorithms: Sequence[str] = ("RS256", "ES256"),
        allow_http: bool = False,
        leeway_seconds: float = 30,
        cache_seconds: float = 3600,
        timeout: float = 10,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._keys = keys
        self._secret = client_secret
        self._client_auth = client_auth
        self._scopes = " ".join(dict.fromkeys(["openid", *scopes]))
        self._algorithms = [a for a in algorithms if not a.upper().startswith("HS")]
        self._allow_http = allow_http
        self._leeway = leeway_seconds
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._metadata: ProviderMetadata | None = None
        self._fetched_at = float("-inf")

    def _check_url(self, url: Any, what: str) -> str:
        if not isinstance(url, str) or not (
            url.startswith("https://") or (self._allow_http and url.startswith("http://"))
        ):
            raise OidcError(f"the issuer's {what} is not an https URL: {url!r}")
        return url

    async def metadata(self) -> ProviderMetadata:
        """The issuer's endpoints, from its discovery document (cached)."""
        if self._metadata is not None and time.monotonic() - self._fetched_at < self._cache_seconds:
            return self._metadata
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        self._check_url(url, "discovery document")
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcError(f"the issuer's discovery document cannot be read: {exc}") from exc
        document = _json_object(response, "discovery document")
        issuer = document.get("issuer")
        # OpenID Connect Discovery §4.3: the document is the issuer's own
        if not isinstance(issuer, str) or issuer.rstrip("/") != self.issuer.rstrip("/"):
            raise OidcError(f"the discovery document names another issuer: {issuer!r}")
        metadata = ProviderMetadata(
            issuer=issuer,
            authorization_endpoint=self._check_url(
                document.get("authorization_endpoint"), "authorization endpoint"
            ),
            token_endpoint=self._check_url(document.get("token_endpoint"), "token endpoint"),
        )
        methods = document.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise OidcError("the issuer does not support PKCE with S256")
        self._metadata, self._fetched_at = metadata, time.monotonic()
        return metadata

    def authorization_url(
        self,
        metadata: ProviderMetadata,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_verifier: str,
    ) -> str:
        """Where to send the browser to sign in."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": self._scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": code_challenge(code_verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return f"{metadata.authorization_endpoint}{separator}{query}"

    async def exchange(self, code: str, *, redirect_uri: str, code_verifier: str) -> TokenResponse:
        """The tokens the code is worth (§3.1.3.1)."""
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        auth: httpx.Auth = httpx.Auth()  # none: the base class sends the request as it is
        if self._secret is not None and self._client_auth == "client_secret_basic":
            # RFC 6749 §2.3.1: both parts form-urlencoded before Basic
            auth = httpx.BasicAuth(
                urlencode({"": self.client_id})[1:], urlencode({"": self._secret})[1:]
            )
        else:
            form["client_id"] = self.client_id
            if self._secret is not None:
                form["client_secret"] = self._secret
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(
                    metadata.token_endpoint,
                    data=form,
                    auth=auth,
                    headers={"Accept": "application/json"},
                )
        except httpx.HTTPError as exc:
            raise OidcError(f"the token endpoint cannot be reached: {exc}") from exc
        if response.status_code != 200:
            error = _error_of(response)
            raise OidcError(
                f"the token endpoint refused the code ({response.status_code}: {error})"
            )
        body = _json_object(response, "token response")
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the token response has no ID token")
        access_token = body.get("access_token")
        return TokenResponse(id_token, access_token if isinstance(access_token, str) else None)

    async def verify_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The ID token's claims, once every check of §3.1.3.7 passed."""
        metadata = await self.metadata()
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise OidcError("the ID token is malformed") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self._algorithms:
            raise OidcError(f"the ID token's algorithm {alg!r} is not accepted")
        try:
            jwk = await self._keys.key(kid if isinstance(kid, str) else None)
        except (UnknownKey, KeyUnavailable) as exc:
            raise OidcError(f"the ID token's key cannot be found: {exc}") from exc
        if not str(alg).startswith(_FAMILIES.get(jwk.key_type or "", ())):
            raise OidcError(f"the ID token's algorithm {alg} does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                jwk.key,
                algorithms=[str(alg)],
                audience=self.client_id,
                issuer=metadata.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise OidcError(f"the ID token is not valid: {exc}") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("the ID token is for several clients and not authorized for this one")
        presented = claims.get("nonce")
        if not isinstance(presented, str) or not secrets.compare_digest(
            presented.encode(), nonce.encode()
        ):
            raise OidcError("the ID token's nonce is not this sign-in's")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise OidcError("the ID token names no subject")
        return claims


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise OidcError(f"the issuer's {what} answered {response.status_code}")
    if len(response.content) > _MAX_RESPONSE:
        raise OidcError(f"the issuer's {what} is too large")
    try:
        body = response.json()
    except ValueError as exc:
        raise OidcError(f"the issuer's {what} is not JSON") from exc
    if not isinstance(body, dict):
        raise OidcError(f"the issuer's {what} is not a JSON object")
    return body


def _error_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "no error document"
    if isinstance(body, Mapping):
        return str(body.get("error") or "unknown error")[:100]
    return "unknown error"

"""Bearer token verification (GEN-06): signature, ``exp``/``nbf``, ``iss``, ``aud``.

The accepted algorithms are fixed per key source by configuration, never taken from the token:
``alg: none`` and HS/RS confusion (an HMAC "signed" with a public key) are refused because the
header's ``alg`` must be one of them and match the key's type. Tokens are bounded in size before
anything is parsed. Every failure is an :class:`InvalidToken` whose message is safe to send back
in ``WWW-Authenticate``.

Revocation: a verifier given a :class:`RevocationCheck` (the services' deny list, kept in the
index so that every worker and replica sees it) refuses a token whose ``jti`` is on it, also
when the token's verification is cached.
"""

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from jwt import PyJWK

from app.auth.keys import LOCAL_ALGORITHM, KeyUnavailable, LocalSigningKey, OidcKeys, UnknownKey
from app.auth.principal import ClaimMapping, Principal

__all__ = ["InvalidToken", "RevocationCheck", "TokenIssuer", "TokenVerifier"]

CACHE_SIZE = 4096
#: key type -> algorithm prefixes that may be used with it
_FAMILIES = {"RSA": ("RS", "PS"), "EC": ("ES",), "OKP": ("Ed",)}


class InvalidToken(Exception):
    """The bearer token is missing, malformed, forged, expired, revoked or not for us (401)."""


class RevocationCheck(Protocol):
    """The deny list: why the token ``jti`` names may no longer be used, or None.

    Called for every request that carries a token with a ``jti``: it must answer from memory
    (``app.services.tokens`` keeps the revoked set cached and refreshes it every few seconds).
    """

    async def revoked(self, jti: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class TokenIssuer:
    """Issues tokens signed with the embedded key (``lightbox token create``)."""

    key: LocalSigningKey
    issuer: str
    audience: str

    def issue(
        self,
        subject: str,
        scopes: Sequence[str],
        ttl_seconds: int,
        *,
        study_uids: Sequence[str] = (),
        patient_ids: Sequence[str] = (),
        mapping: ClaimMapping | None = None,
        now: float | None = None,
        jti: str | None = None,
    ) -> str:
        """A signed token; ``jti`` and ``now`` let the token registry record what it signs."""
        mapping = mapping or ClaimMapping()
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_seconds,
            "jti": jti or uuid.uuid4().hex,
            "scope": " ".join(scopes),
        }
        if study_uids:
            claims[mapping.study_claim] = list(study_uids)
        if patient_ids:
            claims[mapping.patient_claim] = list(patient_ids)
        return jwt.encode(
            claims, self.key.private_key, algorithm=LOCAL_ALGORITHM, headers={"kid": self.key.kid}
        )


class TokenVerifier:
    """Verifies bearer tokens from the embedded issuer and/or one OpenID Connect issuer."""

    def __init__(
        self,
        *,
        audience: str,
        mapping: ClaimMapping,
        local_key: LocalSigningKey | None = None,
        local_issuer: str = "lightbox",
        oidc: OidcKeys | None = None,
        oidc_audience: str | None = None,
        oidc_algorithms: Sequence[str] = ("RS256", "ES256"),
        leeway_seconds: float = 30,
        max_token_bytes: int = 8192,
        cache_size: int = CACHE_SIZE,
        revocations: RevocationCheck | None = None,
    ) -> None:
        if local_key is None and oidc is None:
            raise ValueError("a token verifier needs a key source")
        self._audience = audience
        self._mapping = mapping
        self._local = local_key
        self._local_issuer = local_issuer
        self._oidc = oidc
        self._oidc_audience = oidc_audience or audience
        self._oidc_algorithms = [a for a in oidc_algorithms if not a.upper().startswith("HS")]
        self._leeway = leeway_seconds
        self._max_bytes = max_token_bytes
        self._revocations = revocations
        # token -> (caller, valid until, key-set generation): a repeated token skips the
        # signature check; an entry dies with the token's exp, after 5 minutes, or on rotation
        self._cache: dict[str, tuple[Principal, float, int]] = {}
        self._cache_size = max(0, cache_size)

    def _generation(self) -> int:
        return self._oidc.generation if self._oidc is not None else 0

    async def verify(self, token: str) -> Principal:
        """The caller the token describes; :class:`InvalidToken` unless every check passes."""
        principal = await self._verified(token)
        if self._revocations is not None and principal.token_id is not None:
            # after the cache, not inside it: a revocation applies to tokens verified before
            reason = await self._revocations.revoked(principal.token_id)
            if reason is not None:
                raise InvalidToken(reason)
        return principal

    async def _verified(self, token: str) -> Principal:
        if len(token) > self._max_bytes:
            raise InvalidToken("the token is too large")
        now = time.time()
        # keyed by the whole token, signature included: a token altered anywhere is another key
        cached = self._cache.get(token)
        if cached is not None:
            principal, until, generation = cached
            if now < until and generation == self._generation():
                return principal
            del self._cache[token]
        principal, exp = await self._verify(token)
        if self._cache_size:
            while len(self._cache) >= self._cache_size:  # bounded: the oldest entry goes first
                del self._cache[next(iter(self._cache))]
            until = min(exp + self._leeway, now + 300)  # never past what _verify would accept
            self._cache[token] = (principal, until, self._generation())
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken("the token is malformed") from exc
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str) or (kid is not None and not isinstance(kid, str)):
            raise InvalidToken("the token header is malformed")
        issuer = unverified.get("iss")
        key: Any
        if self._local is not None and issuer == self._local_issuer:
            if alg != LOCAL_ALGORITHM:
                raise InvalidToken(f"algorithm {alg} is not accepted")
            if kid != self._local.kid:
                raise InvalidToken("the token was signed by an unknown key")
            key, algorithms, audience = self._local.public_key, [LOCAL_ALGORITHM], self._audience
        elif (
            self._oidc is not None
            and isinstance(issuer, str)
            and (issuer.rstrip("/") == self._oidc.issuer)
        ):
            if alg not in self._oidc_algorithms:
                raise InvalidToken(f"algorithm {alg} is not accepted")
            try:
                jwk = await self._oidc.key(kid)
            except UnknownKey as exc:
                raise InvalidToken("the token was signed by an unknown key") from exc
            except KeyUnavailable as exc:
                raise InvalidToken("the issuer's keys cannot be fetched") from exc
            _check_family(jwk, alg)
            key, algorithms, audience = jwk.key, [alg], self._oidc_audience
        else:
            raise InvalidToken("the token is not from a trusted issuer")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=audience,
                issuer=issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("the token is not valid yet") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("the token is not for this audience") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("the token signature or claims are invalid") from exc
        return self._mapping.principal(claims), float(claims["exp"])


def _check_family(jwk: PyJWK, alg: str) -> None:
    declared = jwk.algorithm_name if "alg" in (getattr(jwk, "_jwk_data", None) or {}) else None
    if declared is not None and declared != alg:
        raise InvalidToken(f"algorithm {alg} does not match the key")
    if not alg.startswith(_FAMILIES.get(jwk.key_type or "", ())):
        raise InvalidToken(f"algorithm {alg} does not match the key")

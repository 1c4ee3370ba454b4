"""Browser sessions: JWTs signed by the embedded key, the same tokens the API verifies.

A session is a token of the embedded issuer (``iss``/``aud`` as ``lightbox token create``'s),
marked ``kind: session``, carried in an HttpOnly cookie. The API's verifier
(:class:`~app.auth.verify.TokenVerifier`) checks it like any bearer token, so the DICOMweb root
accepts the cookie of a signed-in browser (the built-in viewer, OHIF on the same origin).

Timeouts without server state: a session token lives ``idle`` seconds; a request made with it
once it is ``refresh_after`` old gets a fresh one (same ``jti``, the session's id) that lives
``idle`` seconds more, never past ``auth_time + absolute``. A session unused for ``idle``
seconds (less at most ``refresh_after``) has expired, and one older than ``absolute`` ends
whatever its use. Ending a session early (logout) is a revocation of its ``jti``, which covers
every token of the session.

CSRF: a session's token is ``HMAC(key, session id)`` (a synchronizer token bound to the
session, stateless), where the key is derived from the embedded signing key, so every replica
computes the same one. Pages put it in their forms and in htmx's headers; the cookie alone
cannot supply it.
"""

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization

from app.auth.keys import LOCAL_ALGORITHM, LocalSigningKey
from app.auth.principal import ClaimMapping, Permission

__all__ = [
    "LOCAL_IDP",
    "SESSION_KIND",
    "NotASession",
    "SessionClaims",
    "SessionPolicy",
    "SessionSigner",
    "permission_claims",
]

#: the ``kind`` claim of a session token (``lightbox token create`` tokens have none)
SESSION_KIND: Final = "session"
#: ``idp`` of a session opened with a local user's password (else the OpenID issuer's URL)
LOCAL_IDP: Final = "local"
#: a sealed value's ``aud`` prefix: never the API's audience, so the verifier refuses it
_SEALED_AUDIENCE: Final = "lightbox-sealed:"


class NotASession(Exception):
    """A verified token that is not a session token (a bearer or share token in the cookie)."""


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How long sessions live (``LIGHTBOX_AUTH__SESSION_*``)."""

    idle_seconds: int = 1800
    absolute_seconds: int = 43200

    def __post_init__(self) -> None:
        if self.idle_seconds < 60 or self.absolute_seconds < self.idle_seconds:
            raise ValueError("sessions need idle >= 60 s and absolute >= idle")

    @property
    def refresh_after(self) -> int:
        """Age at which a used session token is replaced (a tenth of the idle timeout, <= 5 min).

        >>> SessionPolicy(1800, 43200).refresh_after
        180
        >>> SessionPolicy(7200, 43200).refresh_after
        300
        """
        return max(1, min(300, self.idle_seconds // 10))


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """What a session token says, beyond the permissions the verifier maps."""

    subject: str
    session_id: str
    permissions: frozenset[Permission]
    #: when the user signed in (the absolute timeout counts from here)
    auth_time: int
    issued_at: int
    expires_at: int
    #: a name to show (the user name, the OpenID ``name`` or ``preferred_username``)
    name: str
    #: :data:`LOCAL_IDP` or the OpenID issuer the user signed in with
    idp: str


def permission_claims(mapping: ClaimMapping, permissions: Iterable[Permission]) -> dict[str, Any]:
    """The claims that the mapping reads back as ``permissions``: for each, the first value
    configured for it, in the first permission claim (a dotted path becomes nested objects).

    So sessions keep working when the claims are configured for an identity provider
    (``realm_access.roles`` with ``pacs-reader``):

    >>> m = ClaimMapping(permission_claims=("realm_access.roles",),
    ...                  values={"pacs-reader": Permission.READ, "read": Permission.READ})
    >>> permission_claims(m, [Permission.READ])
    {'realm_access': {'roles': ['pacs-reader']}}
    >>> permission_claims(ClaimMapping(), [Permission.WRITE, Permission.READ])
    {'scope': 'read write'}
    """
    wanted = set(permissions)
    values: list[str] = []
    for permission in Permission:  # a stable order
        if permission not in wanted:
            continue
        value = next((v for v, p in mapping.values.items() if p is permission), None)
        if value is None:
            raise ValueError(f"no claim value is configured for {permission.value}")
        values.append(value)
    path = mapping.permission_claims[0] if mapping.permission_claims else "scope"
    claims: dict[str, Any] = {}
    *parents, leaf = path.split(".")
    target: MutableMapping[str, Any] = claims
    for part in parents:
        target = target.setdefault(part, {})
    # OAuth's ``scope`` is one space-separated string; other claims (roles) are lists
    target[leaf] = " ".join(values) if path in ("scope", "scp") and not parents else values
    return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SessionSigner:
    """Issues, renews and reads session tokens; derives their CSRF tokens."""

    def __init__(
        self,
        key: LocalSigningKey,
        *,
        issuer: str,
        audience: str,
        mapping: ClaimMapping,
        policy: SessionPolicy,
    ) -> None:
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._mapping = mapping
        self.policy = policy
        der = key.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # a key of its own for the MACs, derived from (never equal to) the signing key
        self._mac_key = hashlib.sha256(b"lightbox csrf v1\0" + der).digest()

    def issue(
        self,
        subject: str,
        permissions: Iterable[Permission],
        *,
        name: str,
        idp: str,
        session_id: str | None = None,
        now: float | None = None,
    ) -> tuple[str, SessionClaims]:
        """A new session's token and claims (``session_id``: the ``jti`` the token registry
        recorded for it)."""
        issued = int(now if now is not None else time.time())
        claims = SessionClaims(
            subject=subject,
            session_id=session_id or uuid.uuid4().hex,
            permissions=frozenset(permissions),
            auth_time=issued,
            issued_at=issued,
            expires_at=min(
                issued + self.policy.idle_seconds, issued + self.policy.absolute_seconds
            ),
            name=name,
            idp=idp,
        )
        return self._sign(claims), claims

    def renewal_due(self, claims: SessionClaims, now: float | None = None) -> bool:
        """Whether a request made now with this session should get a fresh token."""
        current = int(now if now is not None else time.time())
        return (
            current - claims.issued_at >= self.policy.refresh_after
            and claims.expires_at < claims.auth_time + self.policy.absolute_seconds
        )

    def renew(
        self,
        claims: SessionClaims,
        *,
        permissions: Iterable[Permission] | None = None,
        now: float | None = None,
    ) -> tuple[str, SessionClaims]:
        """The session's next token: ``idle`` more seconds, within the absolute timeout
        (``permissions``: the user's current ones, when they changed)."""
        issued = int(now if now is not None else time.time())
        renewed = SessionClaims(
            subject=claims.subject,
            session_id=claims.session_id,
            permissions=claims.permissions if permissions is None else frozenset(permissions),
            auth_time=claims.auth_time,
            issued_at=issued,
            expires_at=min(
                issued + self.policy.idle_seconds, claims.auth_time + self.policy.absolute_seconds
            ),
            name=claims.name,
            idp=claims.idp,
        )
        return self._sign(renewed), renewed

    def _sign(self, claims: SessionClaims) -> str:
        payload: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": claims.subject,
            "iat": claims.issued_at,
            "nbf": claims.issued_at,
            "exp": claims.expires_at,
            "jti": claims.session_id,
            "kind": SESSION_KIND,
            "auth_time": claims.auth_time,
            "name": claims.name,
            "idp": claims.idp,
            **permission_claims(self._mapping, claims.permissions),
        }
        return jwt.encode(
            payload,
            self._key.private_key,
            algorithm=LOCAL_ALGORITHM,
            headers={"kid": self._key.kid},
        )

    def read(self, token: str, permissions: Iterable[Permission]) -> SessionClaims:
        """The claims of a token the verifier has accepted (its signature is not checked again:
        never call this on a token the verifier has not passed); ``permissions`` are the
        verifier's reading of them. :class:`NotASession` for any other kind of token."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise NotASession("the token is malformed") from exc
        if claims.get("kind") != SESSION_KIND or claims.get("iss") != self._issuer:
            raise NotASession("the token is not a session")
        try:
            return SessionClaims(
                subject=str(claims["sub"]),
                session_id=str(claims["jti"]),
                permissions=frozenset(permissions),
                auth_time=int(claims["auth_time"]),
                issued_at=int(claims["iat"]),
                expires_at=int(claims["exp"]),
                name=str(claims.get("name") or claims["sub"]),
                idp=str(claims.get("idp") or LOCAL_IDP),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NotASession("the session token lacks a claim") from exc

    def _mac(self, purpose: str, value: str) -> str:
        message = f"{purpose}\0{value}".encode()
        return _b64(hmac.new(self._mac_key, message, hashlib.sha256).digest())

    def csrf_token(self, session_id: str) -> str:
        """The session's CSRF token (the same for every token of the session)."""
        return self._mac("session", session_id)

    def csrf_valid(self, session_id: str, presented: str | None) -> bool:
        """Whether ``presented`` is the session's CSRF token (compared in constant time)."""
        if not presented:
            return False
        return hmac.compare_digest(self.csrf_token(session_id).encode(), presented.encode())

    def login_csrf_token(self, nonce: str) -> str:
        """The login form's CSRF token, bound to the browser's pre-login cookie ``nonce``."""
        return self._mac("login", nonce)

    def login_csrf_valid(self, nonce: str | None, presented: str | None) -> bool:
        if not nonce or not presented:
            return False
        return hmac.compare_digest(self.login_csrf_token(nonce).encode(), presented.encode())

    def seal(self, purpose: str, payload: Mapping[str, Any], ttl_seconds: int) -> str:
        """A signed, short-lived value for the browser to hold (an OpenID login in progress);
        its audience names ``purpose``, so the API's verifier never accepts it."""
        now = int(time.time())
        claims = {
            **payload,
            "iss": self._issuer,
            "aud": _SEALED_AUDIENCE + purpose,
            "iat": now,
            "exp": now + ttl_seconds,
        }
        return jwt.encode(
            claims, self._key.private_key, algorithm=LOCAL_ALGORITHM, headers={"kid": self._key.kid}
        )

    def unseal(self, purpose: str, sealed: str) -> dict[str, Any]:
        """What :meth:`seal` sealed for ``purpose``; ``ValueError`` if forged, expired or for
        another purpose."""
        try:
            claims: dict[str, Any] = jwt.decode(
                sealed,
                self._key.public_key,
                algorithms=[LOCAL_ALGORITHM],
                audience=_SEALED_AUDIENCE + purpose,
                issuer=self._issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise ValueError(f"the sealed {purpose} is invalid or expired") from exc
        return claims

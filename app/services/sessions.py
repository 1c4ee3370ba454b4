"""Browser sessions (issue 22, point 1): opened at sign-in, renewed while used, ended at logout.

The tokens, their timeouts and CSRF tokens are :mod:`app.auth.sessions`'; this service adds
what needs the index or the audit trail: who signed in (audited), and whether a local user may
still use a session when it is renewed (a disabled user's sessions are not renewed, and a
changed role takes effect at the next renewal).
"""

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from app.auth.keys import LocalSigningKey
from app.auth.principal import ClaimMapping, Permission
from app.auth.sessions import LOCAL_IDP, SessionClaims, SessionPolicy, SessionSigner
from app.services.audit import AuditLog, Outcome

__all__ = ["CurrentPermissions", "Session", "SessionEnded", "SessionService"]

#: the permissions a local user has now (``None``: the user is gone or disabled)
CurrentPermissions = Callable[[str], Awaitable[frozenset[Permission] | None]]


class SessionEnded(Exception):
    """The session's user may no longer use it (disabled or removed since signing in)."""


@dataclass(frozen=True, slots=True)
class Session:
    """A session's current token (the cookie's value) and what it says."""

    token: str
    claims: SessionClaims


class SessionService:
    """Sessions signed by the embedded key (loaded on first use: only servers with pages and
    users need it)."""

    def __init__(
        self,
        key: Callable[[], LocalSigningKey],
        audit: AuditLog,
        *,
        issuer: str,
        audience: str,
        mapping: ClaimMapping,
        policy: SessionPolicy,
    ) -> None:
        self._load_key = key
        self._audit = audit
        self._issuer = issuer
        self._audience = audience
        self._mapping = mapping
        self.policy = policy
        self._signer: SessionSigner | None = None
        self._current: CurrentPermissions | None = None

    def use_directory(self, current: CurrentPermissions) -> None:
        """Where renewals look up a local user's current permissions."""
        self._current = current

    @property
    def signer(self) -> SessionSigner:
        if self._signer is None:
            self._signer = SessionSigner(
                self._load_key(),
                issuer=self._issuer,
                audience=self._audience,
                mapping=self._mapping,
                policy=self.policy,
            )
        return self._signer

    async def start(
        self, subject: str, permissions: Iterable[Permission], *, name: str, idp: str
    ) -> Session:
        """A new session for a user who has just proved who they are (the caller audits the
        sign-in, with what it knows of the request)."""
        token, claims = self.signer.issue(subject, permissions, name=name, idp=idp)
        return Session(token, claims)

    async def end(self, claims: SessionClaims, *, source: str | None) -> None:
        """Sign out: the session's tokens are refused from now on (audited as ``logout``)."""
        await self._audit.record(
            action="logout",
            outcome=Outcome.SUCCESS,
            actor=claims.subject,
            source=source,
            detail=f"session {claims.session_id} ({claims.idp})",
        )

    def read(self, token: str, permissions: Iterable[Permission]) -> SessionClaims:
        """A verified cookie token's session claims (``NotASession`` for other tokens)."""
        return self.signer.read(token, permissions)

    async def renew(self, claims: SessionClaims, now: float | None = None) -> Session | None:
        """The session's next token when one is due (``None``: keep the current one).

        A local user's permissions are looked up again: :class:`SessionEnded` when the user has
        been disabled or removed (noticed within ``refresh_after`` of it, by the next request).
        """
        current = now if now is not None else time.time()
        if not self.signer.renewal_due(claims, current):
            return None
        permissions = None
        if claims.idp == LOCAL_IDP and self._current is not None:
            permissions = await self._current(claims.subject)
            if not permissions:
                raise SessionEnded("the session's user is disabled or removed")
        token, renewed = self.signer.renew(claims, permissions=permissions, now=current)
        return Session(token, renewed)

    def csrf_token(self, claims: SessionClaims) -> str:
        return self.signer.csrf_token(claims.session_id)

    def csrf_valid(self, claims: SessionClaims, presented: str | None) -> bool:
        return self.signer.csrf_valid(claims.session_id, presented)

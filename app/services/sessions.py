"""Browser sessions (issue 22, point 1): opened at sign-in, renewed while used, ended at logout.

The tokens, their timeouts and CSRF tokens are :mod:`app.auth.sessions`'; this service adds
what needs the index or the audit trail:

- each session is recorded in the token registry (:class:`~app.services.tokens.TokenService`,
  kind ``session``) when it opens, for its absolute lifetime; its ``jti`` is the session's id,
  the same for every renewed token of it, so revoking it (logout, ``lightbox token revoke``, a
  disabled user) refuses all of them, in every replica, within the deny list's refresh;
- whether a local user may still use a session when it is renewed (a disabled user's session
  ends, and a changed role takes effect at the next renewal).
"""

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from app.auth.keys import LocalSigningKey
from app.auth.principal import ClaimMapping, Permission
from app.auth.sessions import LOCAL_IDP, SessionClaims, SessionPolicy, SessionSigner
from app.errors import NotFound
from app.services.audit import AuditLog, Outcome
from app.services.tokens import TokenKind, TokenService

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
        tokens: TokenService,
        *,
        issuer: str,
        audience: str,
        mapping: ClaimMapping,
        policy: SessionPolicy,
    ) -> None:
        self._load_key = key
        self._audit = audit
        self._tokens = tokens
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
        """A new session for a user who has just proved who they are, recorded in the token
        registry (the sign-in itself is audited by the caller, which knows the request)."""
        granted = frozenset(permissions)
        issued = await self._tokens.issue(
            TokenKind.SESSION,
            subject,
            [p.value for p in Permission if p in granted],
            timedelta(seconds=self.policy.absolute_seconds),
            created_by=subject,
        )
        token, claims = self.signer.issue(
            subject,
            granted,
            name=name,
            idp=idp,
            session_id=issued.record.jti,
            now=issued.record.issued_at.timestamp(),
        )
        return Session(token, claims)

    async def end(self, claims: SessionClaims, *, source: str | None) -> None:
        """Sign out: the session's tokens are refused from now on, by every replica (revoked in
        the registry), and the logout is audited."""
        # NotFound: a session of another registry (an index restored from a backup)
        with contextlib.suppress(NotFound):
            await self._tokens.revoke(claims.session_id, by=claims.subject, reason="logout")
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

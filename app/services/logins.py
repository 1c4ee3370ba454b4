"""Signing in with a password (issue 22, point 1): throttled, audited, saying nothing of who
exists.

Every attempt verifies a password hash, the user's or a dummy one (an unknown name takes the
time a known one does). Failures are counted per user name and per client address in the index
(every replica counts the same): a name or an address with ``max_failures`` within ``window``
is locked for ``lockout`` after its last failure, and refused even with the right password.
Attempts while locked are refused without counting (they cannot extend the lockout). Each
failure is audited as ``login-failure`` with its reason (unknown user, wrong password, disabled,
locked), for administrators only: the person signing in only ever learns that it failed. A
success (``login``) clears the name's count, not the address's.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import anyio

from app.auth.passwords import InvalidUsername, normalize_password, normalize_username
from app.auth.principal import Permission
from app.auth.roles import Role
from app.index import login_failures
from app.index import users as directory
from app.index.db import Database
from app.services.audit import AuditLog, Outcome
from app.services.users import UserService, user_key

__all__ = ["GENERIC_FAILURE", "LoginPolicy", "LoginRefused", "LoginService", "SignedIn"]

#: the one thing a failed sign-in is told
GENERIC_FAILURE: Final = (
    "The user name or password is not correct, or the account cannot sign in now."
)


class LoginRefused(Exception):
    """A sign-in failed; ``reason`` is for the audit trail and tests, never for the person."""

    def __init__(self, reason: str) -> None:
        super().__init__(GENERIC_FAILURE)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """Throttling of failed sign-ins (``LIGHTBOX_AUTH__LOGIN_*``)."""

    max_failures_per_user: int = 5
    max_failures_per_address: int = 20
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Who signed in, and what they may do."""

    subject: str
    name: str
    permissions: frozenset[Permission]


def address_key(address: str) -> str:
    return f"a:{address}"


class LoginService:
    """Password sign-ins of embedded users."""

    def __init__(
        self, db: Database, users: UserService, audit: AuditLog, policy: LoginPolicy
    ) -> None:
        self._db = db
        self._users = users
        self._audit = audit
        self.policy = policy
        #: the time of an attempt (replaceable: the throttling is about time)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def password(self, username: str, password: str, *, source: str | None) -> SignedIn:
        """Check a sign-in; :class:`LoginRefused` when it fails, for whatever reason."""
        now = self.clock()
        try:
            name: str | None = normalize_username(username)
        except InvalidUsername:
            name = None
        keys = ([user_key(name)] if name else []) + ([address_key(source)] if source else [])
        async with self._db.read() as conn:
            counts = await login_failures.failure_counts(conn, keys)
            row = await directory.find_user(conn, name) if name else None
        locked = self._locked(counts, now)
        passwords = self._users.passwords
        matches = await anyio.to_thread.run_sync(
            passwords.verify,
            row.password_hash if row is not None else None,
            password,
            limiter=self._users.hashing,
        )
        reason = None
        if locked is not None:
            reason = f"locked ({locked})"
        elif row is None:
            reason = "unknown user"
        elif not matches:
            reason = "wrong password"
        elif row.disabled:
            reason = "disabled user"
        if reason is not None:
            if locked is None:
                await self._count_failure(keys, now)
            await self._audit.record(
                action="login-failure",
                outcome=Outcome.DENIED,
                status=401,
                # a name that is no user is not kept: it may be a password typed in the wrong box
                actor=row.username if row is not None else None,
                source=source,
                detail=f"password sign-in: {reason}",
            )
            raise LoginRefused(reason)
        assert row is not None
        rehashed = None
        if passwords.needs_rehash(row.password_hash):
            rehashed = await anyio.to_thread.run_sync(
                passwords.hash, normalize_password(password), limiter=self._users.hashing
            )
        async with self._db.write() as conn:
            await login_failures.clear_failures(conn, [user_key(row.username)])
            await directory.record_login(conn, row.username, now=now, password_hash=rehashed)
        await self._audit.record(
            action="login",
            outcome=Outcome.SUCCESS,
            actor=row.username,
            source=source,
            detail="password sign-in",
        )
        role = Role(row.role) if row.role in Role._value2member_map_ else Role.READER
        return SignedIn(row.username, row.username, role.permissions)

    def _locked(self, counts: dict[str, login_failures.FailureCount], now: datetime) -> str | None:
        """Which of the attempt's keys is locked ("user" or "address"), if any."""
        for key, count in counts.items():
            limit = (
                self.policy.max_failures_per_user
                if key.startswith("u:")
                else self.policy.max_failures_per_address
            )
            if count.failures >= limit and count.last_failure > now - self.policy.lockout:
                return "user" if key.startswith("u:") else "address"
        return None

    async def _count_failure(self, keys: list[str], now: datetime) -> None:
        async with self._db.write() as conn:
            await login_failures.record_failure(
                conn,
                keys,
                now=now,
                window_start_after=now - self.policy.window,
                stale_before=now - max(self.policy.window, self.policy.lockout),
            )

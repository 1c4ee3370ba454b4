"""Embedded users (issue 22, point 1): the directory an administrator manages with
``lightbox user`` (and, later, the admin pages), and what a session's renewal asks of it.

Each change is audited (``user-added``, ``user-password-changed``, ``user-disabled``,
``user-enabled``, ``user-role-changed``) with who made it. Disabling a user or setting their
password ends their open sessions (revoked in the token registry); a new role reaches them at
their session's next renewal. Hashing runs in worker threads, a few at a time: argon2id takes
64 MiB and tens of milliseconds per hash by design.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from app.auth.passwords import (
    InvalidPassword,
    InvalidUsername,
    Passwords,
    check_password,
    normalize_username,
)
from app.auth.principal import Permission
from app.auth.roles import Role
from app.errors import BadRequest, LightboxError, NotFound
from app.index import login_failures
from app.index import users as directory
from app.index.db import Database
from app.services.audit import AuditLog, Outcome
from app.services.tokens import TokenKind, TokenSearch, TokenService, TokenState

__all__ = ["DuplicateUser", "UserInfo", "UserService", "user_key"]


class DuplicateUser(LightboxError):
    """A user of that name exists already."""

    http_status = 409


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user as listed (never the hash)."""

    username: str
    role: Role
    disabled: bool
    created_at: datetime
    password_changed_at: datetime
    last_login_at: datetime | None

    @property
    def permissions(self) -> frozenset[Permission]:
        return self.role.permissions


def user_key(username: str) -> str:
    """The failed sign-in counter of a user name."""
    return f"u:{username}"


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise BadRequest(f"unknown role {value!r} (one of {names})") from None


def _name(value: str) -> str:
    try:
        return normalize_username(value)
    except InvalidUsername as exc:
        raise BadRequest(str(exc)) from None


def _info(row: directory.UserRow) -> UserInfo:
    try:
        role = Role(row.role)
    except ValueError:  # a role this version does not know grants nothing
        role = Role.READER
    return UserInfo(
        row.username,
        role,
        row.disabled,
        row.created_at,
        row.password_changed_at,
        row.last_login_at,
    )


class UserService:
    """The directory of embedded users."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        tokens: TokenService,
        *,
        passwords: Passwords | None = None,
        min_password_chars: int = 12,
        hashing_concurrency: int = 2,
    ) -> None:
        self._db = db
        self._audit = audit
        self._tokens = tokens
        self.passwords = passwords or Passwords()
        self._min_password = min_password_chars
        #: argon2id hashes at once in this process (each takes 64 MiB)
        self.hashing = anyio.CapacityLimiter(hashing_concurrency)

    async def _hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.passwords.hash, password, limiter=self.hashing)

    def _password(self, password: str, username: str) -> str:
        try:
            return check_password(password, username=username, min_chars=self._min_password)
        except InvalidPassword as exc:
            raise BadRequest(str(exc)) from None

    async def add(self, username: str, password: str, role: str, *, by: str | None) -> UserInfo:
        """Add a user; :class:`~app.errors.BadRequest` names what is wrong with the values,
        :class:`DuplicateUser` when the name is taken."""
        name = _name(username)
        granted = _role(role)
        hashed = await self._hash(self._password(password, name))
        now = datetime.now(UTC)
        try:
            async with self._db.write() as conn:
                await directory.add_user(conn, name, hashed, granted.value, now=now)
        except directory.DuplicateUser:
            raise DuplicateUser(f"a user {name!r} exists already") from None
        await self._record("user-added", name, by, f"role={granted.value}")
        return await self.get(name)

    async def get(self, username: str) -> UserInfo:
        name = _name(username)
        async with self._db.read() as conn:
            row = await directory.find_user(conn, name)
        if row is None:
            raise NotFound(f"no user {name!r}")
        return _info(row)

    async def list(self) -> list[UserInfo]:
        async with self._db.read() as conn:
            return [_info(row) for row in await directory.list_users(conn)]

    async def count(self, *, enabled_only: bool = True) -> int:
        async with self._db.read() as conn:
            return await directory.count_users(conn, enabled_only=enabled_only)

    async def set_password(self, username: str, password: str, *, by: str | None) -> None:
        name = _name(username)
        hashed = await self._hash(self._password(password, name))
        async with self._db.write() as conn:
            found = await directory.set_password_hash(conn, name, hashed, now=datetime.now(UTC))
        if not found:
            raise NotFound(f"no user {name!r}")
        await self._record("user-password-changed", name, by)
        await self._end_sessions(name, by, "password changed")

    async def set_enabled(self, username: str, enabled: bool, *, by: str | None) -> None:
        """Disable a user (their sessions end within a renewal), or enable one again, which
        also lifts a lockout of their name."""
        name = _name(username)
        async with self._db.write() as conn:
            found = await directory.set_disabled(conn, name, not enabled, now=datetime.now(UTC))
            if found and enabled:
                await login_failures.clear_failures(conn, [user_key(name)])
        if not found:
            raise NotFound(f"no user {name!r}")
        await self._record("user-enabled" if enabled else "user-disabled", name, by)
        if not enabled:
            await self._end_sessions(name, by, "user disabled")

    async def set_role(self, username: str, role: str, *, by: str | None) -> None:
        name = _name(username)
        granted = _role(role)
        async with self._db.write() as conn:
            found = await directory.set_role(conn, name, granted.value, now=datetime.now(UTC))
        if not found:
            raise NotFound(f"no user {name!r}")
        await self._record("user-role-changed", name, by, f"role={granted.value}")

    async def permissions_of(self, username: str) -> frozenset[Permission] | None:
        """A user's permissions now (``None``: no such user, or disabled): what a session's
        renewal asks."""
        try:
            name = normalize_username(username)
        except InvalidUsername:
            return None
        async with self._db.read() as conn:
            row = await directory.find_user(conn, name)
        if row is None or row.disabled:
            return None
        return _info(row).permissions

    async def _end_sessions(self, username: str, by: str | None, reason: str) -> int:
        """Revoke the user's open sessions; how many there were."""
        search = TokenSearch(
            subject=username, kind=TokenKind.SESSION.value, state=TokenState.ACTIVE
        )
        ended = 0
        while True:
            records, _total = await self._tokens.list(search, limit=500)
            if not records:
                return ended
            for record in records:
                await self._tokens.revoke(record.jti, by=by, reason=reason)
                ended += 1

    async def _record(self, action: str, username: str, by: str | None, detail: str = "") -> None:
        await self._audit.record(
            action=action,
            outcome=Outcome.SUCCESS,
            actor=by,
            detail=f"user={username}" + (f" {detail}" if detail else ""),
        )

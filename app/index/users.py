"""Embedded users (``user_account``): the SQL of the user directory (issue 22).

Names are stored normalised by the caller (``app.auth.passwords.normalize_username``); the
unique key then refuses a second user whatever the case. Functions take the connection of the
service's unit of work and never commit.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import UserAccount

__all__ = [
    "DuplicateUser",
    "UserRow",
    "add_user",
    "count_users",
    "find_user",
    "list_users",
    "record_login",
    "set_disabled",
    "set_password_hash",
    "set_role",
]


class DuplicateUser(Exception):
    """A user of that name exists already."""


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user as the directory holds it."""

    username: str
    password_hash: str
    role: str
    disabled: bool
    created_at: datetime
    password_changed_at: datetime
    last_login_at: datetime | None


_COLUMNS = (
    UserAccount.username,
    UserAccount.password_hash,
    UserAccount.role,
    UserAccount.disabled,
    UserAccount.created_at,
    UserAccount.password_changed_at,
    UserAccount.last_login_at,
)


async def add_user(
    conn: AsyncConnection, username: str, password_hash: str, role: str, *, now: datetime
) -> None:
    """Add a user; :class:`DuplicateUser` when the name is taken."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(UserAccount).values(
                    username=username,
                    password_hash=password_hash,
                    role=role,
                    disabled=False,
                    created_at=now,
                    updated_at=now,
                    password_changed_at=now,
                )
            )
    except IntegrityError as exc:
        raise DuplicateUser(username) from exc


async def find_user(conn: AsyncConnection, username: str) -> UserRow | None:
    row = (
        await conn.execute(select(*_COLUMNS).where(UserAccount.username == username))
    ).one_or_none()
    return _user(row) if row is not None else None


def _utc(value: datetime) -> datetime:
    """SQLite gives back naive datetimes: every time here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _user(row: Any) -> UserRow:
    username, password_hash, role, disabled, created, changed, last = row
    return UserRow(
        username,
        password_hash,
        role,
        bool(disabled),
        _utc(created),
        _utc(changed),
        None if last is None else _utc(last),
    )


async def list_users(conn: AsyncConnection) -> list[UserRow]:
    rows = await conn.execute(select(*_COLUMNS).order_by(UserAccount.username))
    return [_user(row) for row in rows.all()]


async def count_users(
    conn: AsyncConnection, *, enabled_only: bool = False, role: str | None = None
) -> int:
    query = select(func.count()).select_from(UserAccount)
    if enabled_only:
        query = query.where(UserAccount.disabled.is_(False))
    if role is not None:
        query = query.where(UserAccount.role == role)
    count: int = (await conn.execute(query)).scalar_one()
    return count


async def _update(conn: AsyncConnection, username: str, now: datetime, **values: object) -> bool:
    result = await conn.execute(
        update(UserAccount).where(UserAccount.username == username).values(updated_at=now, **values)
    )
    return bool(result.rowcount)


async def set_password_hash(
    conn: AsyncConnection, username: str, password_hash: str, *, now: datetime
) -> bool:
    """Replace a user's hash (a new password); False when there is no such user."""
    return await _update(conn, username, now, password_hash=password_hash, password_changed_at=now)


async def set_disabled(
    conn: AsyncConnection, username: str, disabled: bool, *, now: datetime
) -> bool:
    return await _update(conn, username, now, disabled=disabled)


async def set_role(conn: AsyncConnection, username: str, role: str, *, now: datetime) -> bool:
    return await _update(conn, username, now, role=role)


async def record_login(
    conn: AsyncConnection, username: str, *, now: datetime, password_hash: str | None = None
) -> None:
    """Note a successful sign-in (and store a re-made hash, when the parameters changed)."""
    values: dict[str, object] = {"last_login_at": now}
    if password_hash is not None:
        values["password_hash"] = password_hash
    await conn.execute(update(UserAccount).where(UserAccount.username == username).values(**values))

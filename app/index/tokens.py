"""SQL of the token registry (``issued_token``): tokens recorded as they are issued, listed,
revoked, and the revoked ones still alive read back for the verifiers' deny list.

Rows come back as :class:`TokenRow`; times are aware UTC on both databases (SQLite gives back
naive values). Nothing here commits: the callers own their transactions.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import orjson
from sqlalchemy import Select, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import IssuedToken

__all__ = [
    "TokenRow",
    "TokenSearch",
    "TokenState",
    "add",
    "any_alive_with_scope",
    "get",
    "revoke",
    "revoked",
    "search",
]


class TokenState(StrEnum):
    """Where a token stands at a given time."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class TokenRow:
    """One issued token as recorded (never the token itself)."""

    jti: str
    kind: str
    subject: str
    scopes: tuple[str, ...]
    study_uids: tuple[str, ...] | None
    patient_ids: tuple[str, ...] | None
    issued_at: datetime
    expires_at: datetime
    created_by: str | None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    def state(self, now: datetime) -> TokenState:
        """Revoked wins over expired: a revoked token says who revoked it, even once expired."""
        if self.revoked_at is not None:
            return TokenState.REVOKED
        return TokenState.EXPIRED if self.expires_at <= now else TokenState.ACTIVE


@dataclass(frozen=True, slots=True)
class TokenSearch:
    """The listing's filters (all optional, combined with AND)."""

    subject: str | None = None
    kind: str | None = None
    created_by: str | None = None
    #: only tokens in this state at ``now`` (None: every recorded token)
    state: TokenState | None = None


_COLUMNS: Final = tuple(IssuedToken.__table__.c)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _list(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(orjson.loads(value))


def _row(mapping: Any) -> TokenRow:
    revoked_at = mapping["revoked_at"]
    return TokenRow(
        jti=mapping["jti"],
        kind=mapping["kind"],
        subject=mapping["subject"],
        scopes=tuple(mapping["scopes"].split()),
        study_uids=_list(mapping["study_uids"]),
        patient_ids=_list(mapping["patient_ids"]),
        issued_at=_utc(mapping["issued_at"]),
        expires_at=_utc(mapping["expires_at"]),
        created_by=mapping["created_by"],
        revoked_at=None if revoked_at is None else _utc(revoked_at),
        revoked_by=mapping["revoked_by"],
        revoke_reason=mapping["revoke_reason"],
    )


def _json(values: Sequence[str] | None) -> str | None:
    return None if values is None else orjson.dumps(list(values)).decode()


async def add(conn: AsyncConnection, row: TokenRow) -> None:
    """Record an issued token."""
    await conn.execute(
        insert(IssuedToken).values(
            jti=row.jti,
            kind=row.kind,
            subject=row.subject,
            scopes=" ".join(row.scopes),
            study_uids=_json(row.study_uids),
            patient_ids=_json(row.patient_ids),
            issued_at=row.issued_at,
            expires_at=row.expires_at,
            created_by=row.created_by,
        )
    )


async def get(conn: AsyncConnection, jti: str) -> TokenRow | None:
    """The token recorded under ``jti``."""
    found = (await conn.execute(select(*_COLUMNS).where(IssuedToken.jti == jti))).mappings().first()
    return None if found is None else _row(found)


def _filtered(query: Select[Any], f: TokenSearch, now: datetime) -> Select[Any]:
    if f.subject is not None:
        query = query.where(IssuedToken.subject == f.subject)
    if f.kind is not None:
        query = query.where(IssuedToken.kind == f.kind)
    if f.created_by is not None:
        query = query.where(IssuedToken.created_by == f.created_by)
    if f.state is TokenState.ACTIVE:
        query = query.where(IssuedToken.revoked_at.is_(None), IssuedToken.expires_at > now)
    elif f.state is TokenState.REVOKED:
        query = query.where(IssuedToken.revoked_at.is_not(None))
    elif f.state is TokenState.EXPIRED:
        query = query.where(IssuedToken.revoked_at.is_(None), IssuedToken.expires_at <= now)
    return query


async def search(
    conn: AsyncConnection, f: TokenSearch, *, now: datetime, limit: int, offset: int
) -> tuple[list[TokenRow], int]:
    """One page of the tokens matching ``f`` (newest first) and the number matching."""
    count = _filtered(select(func.count()).select_from(IssuedToken), f, now)
    total: int = (await conn.execute(count)).scalar_one()
    query = _filtered(select(*_COLUMNS), f, now).order_by(
        IssuedToken.issued_at.desc(), IssuedToken.jti
    )
    rows = await conn.execute(query.limit(limit).offset(offset))
    return [_row(m) for m in rows.mappings()], total


async def revoke(
    conn: AsyncConnection, jti: str, *, at: datetime, by: str | None, reason: str | None
) -> tuple[TokenRow, bool] | None:
    """Mark ``jti`` revoked: the row as it stands after, and whether this call revoked it (a
    token revoked already keeps its first revocation); None when no such token was issued."""
    result = await conn.execute(
        update(IssuedToken)
        .where(IssuedToken.jti == jti, IssuedToken.revoked_at.is_(None))
        .values(revoked_at=at, revoked_by=by, revoke_reason=reason)
    )
    row = await get(conn, jti)
    return None if row is None else (row, result.rowcount == 1)


async def revoked(conn: AsyncConnection, *, alive_at: datetime) -> dict[str, datetime]:
    """The revoked tokens that have not expired at ``alive_at``, with their revocation times:
    the deny list (bounded by the tokens alive, whatever the registry's size)."""
    rows = await conn.execute(
        select(IssuedToken.jti, IssuedToken.revoked_at).where(
            IssuedToken.revoked_at.is_not(None), IssuedToken.expires_at > alive_at
        )
    )
    return {jti: _utc(at) for jti, at in rows if at is not None}


async def any_alive_with_scope(conn: AsyncConnection, scope: str, *, now: datetime) -> bool:
    """Whether an unrevoked, unexpired token grants ``scope``."""
    padded = literal(" ") + IssuedToken.scopes + literal(" ")
    query = (
        select(IssuedToken.jti)
        .where(
            IssuedToken.revoked_at.is_(None),
            IssuedToken.expires_at > now,
            padded.like(f"% {scope} %"),
        )
        .limit(1)
    )
    return (await conn.execute(query)).first() is not None

"""SQL of the remote AE registry (``remote_ae``): the DICOM peers registered at run time.

Nothing here commits: the service owns the transaction. A title taken by a concurrent insert
surfaces as the unique constraint's error, which :func:`is_duplicate` recognises.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import RemoteAe
from app.index.timestamps import as_utc

__all__ = ["AeRow", "add", "all_rows", "get", "is_duplicate", "remove", "replace"]


@dataclass(frozen=True, slots=True)
class AeRow:
    """A registered peer as stored."""

    ae_title: str
    host: str
    port: int
    tls: bool
    description: str
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    RemoteAe.ae_title,
    RemoteAe.host,
    RemoteAe.port,
    RemoteAe.tls,
    RemoteAe.description,
    RemoteAe.created_at,
    RemoteAe.updated_at,
)


async def get(conn: AsyncConnection, ae_title: str) -> AeRow | None:
    """The peer registered under ``ae_title`` (exact, case-sensitive), if any."""
    row = (await conn.execute(select(*_COLUMNS).where(RemoteAe.ae_title == ae_title))).first()
    return _row(row) if row is not None else None


async def all_rows(conn: AsyncConnection) -> list[AeRow]:
    """Every registered peer, by title."""
    rows = await conn.execute(select(*_COLUMNS).order_by(RemoteAe.ae_title))
    return [_row(row) for row in rows]


async def add(conn: AsyncConnection, row: AeRow) -> None:
    """Register a peer (raises the unique constraint's error when the title is taken)."""
    await conn.execute(
        insert(RemoteAe).values(
            ae_title=row.ae_title,
            host=row.host,
            port=row.port,
            tls=row.tls,
            description=row.description,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
    )


async def replace(conn: AsyncConnection, row: AeRow) -> bool:
    """Change a registered peer's address and description; False when it is not registered."""
    result = await conn.execute(
        update(RemoteAe)
        .where(RemoteAe.ae_title == row.ae_title)
        .values(
            host=row.host,
            port=row.port,
            tls=row.tls,
            description=row.description,
            updated_at=row.updated_at,
        )
    )
    return bool(result.rowcount)


async def remove(conn: AsyncConnection, ae_title: str) -> bool:
    """Forget a registered peer; False when it was not registered."""
    result = await conn.execute(delete(RemoteAe).where(RemoteAe.ae_title == ae_title))
    return bool(result.rowcount)


def _row(row: Any) -> AeRow:
    title, host, port, tls, description, created, updated = row
    return AeRow(title, host, port, tls, description, as_utc(created), as_utc(updated))


def is_duplicate(exc: BaseException) -> bool:
    """Whether a failed :func:`add` met the unique title (a concurrent registration)."""
    return isinstance(exc, IntegrityError)

"""Remote application entities: the DICOM peers Lightbox talks to by AE title.

A C-MOVE names its destination by AE title only (DIMSE-11), a Storage Commitment report may have to
go back on a new association (DIMSE-06), and ``lightbox pull`` names its source: each needs the
peer's address. Peers come from two places:

* the settings (``dimse.remote_aes``): static, for deployments configured as code; read-only here
  (``source == "settings"``), changed where they are defined;
* the index (``lightbox ae add``, ``/api/aes``; ``source == "index"``): so every replica sees the
  same ones, and an administrator adds a modality without a restart.

A title is either: registering one the settings define is refused (409), so a look-up never has
two answers. Every change commits its audit row with it (``WriteAudit``, as a delete does).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from app.config import RemoteAeSettings
from app.dicom.network import validate_ae_title, validate_host, validate_port
from app.errors import BadRequest, Conflict, NotFound
from app.index import aes as registry
from app.index.db import Connection, Database, DriverError
from app.services.audit import AuditRecord, Outcome, WriteAudit

__all__ = ["RemoteAe", "RemoteAeService"]

#: the longest description kept (free text shown to administrators)
MAX_DESCRIPTION = 1024


@dataclass(frozen=True, slots=True)
class RemoteAe:
    """A peer: where to open an association to reach ``ae_title``."""

    ae_title: str
    host: str
    port: int
    tls: bool = False
    description: str = ""
    source: str = "settings"  # "settings" or "index": settings entries cannot be edited at run time

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 literals bracketed), for messages and the audit's source."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _description(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest("invalid description: a string is required")
    if len(value) > MAX_DESCRIPTION:
        raise BadRequest(f"invalid description: at most {MAX_DESCRIPTION} characters")
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise BadRequest("invalid description: no control characters")
    return value


def _tls(value: object) -> bool:
    if not isinstance(value, bool):
        raise BadRequest("invalid tls: true or false")
    return value


class RemoteAeService:
    """Looks peers up by AE title (exact match: AE titles are case-sensitive, PS3.5), and keeps
    the registry of the index (add, update, remove)."""

    def __init__(
        self, configured: Iterable[RemoteAeSettings] = (), db: Database | None = None
    ) -> None:
        self._db = db
        self._configured = {
            entry.ae_title: RemoteAe(
                entry.ae_title, entry.host, entry.port, entry.tls, entry.description
            )
            for entry in configured
        }

    async def get(self, ae_title: str) -> RemoteAe | None:
        title = ae_title.strip()
        configured = self._configured.get(title)
        if configured is not None or self._db is None:
            return configured
        async with self._db.read() as conn:
            row = await registry.get(conn, title)
        return _from_row(row) if row is not None else None

    async def require(self, ae_title: str) -> RemoteAe:
        """The peer named ``ae_title``, or :class:`~app.errors.NotFound` saying how to add it."""
        found = await self.get(ae_title)
        if found is None:
            raise NotFound(
                f"no remote AE {ae_title.strip()!r} is known: add it with `lightbox ae add` "
                "or POST /api/aes"
            )
        return found

    async def list(self) -> list[RemoteAe]:
        """Every known peer, the settings' and the index's, by title."""
        peers = dict(self._configured)
        if self._db is not None:
            async with self._db.read() as conn:
                for row in await registry.all_rows(conn):
                    peers.setdefault(row.ae_title, _from_row(row))
        return sorted(peers.values(), key=lambda ae: ae.ae_title)

    async def add(
        self,
        ae_title: object,
        host: object,
        port: object,
        *,
        tls: object = False,
        description: object = "",
        audit: WriteAudit | None = None,
    ) -> RemoteAe:
        """Register a peer in the index; 400 when a field is invalid, 409 when the title is
        known already."""
        title = validate_ae_title(ae_title)
        entry = _registered(title, host, port, tls, description)
        self._writable(title)
        now = datetime.now(UTC)
        database = self._database()
        try:
            async with database.write() as conn:
                if await registry.get(conn, title) is not None:
                    raise Conflict(f"the remote AE {title!r} is registered already")
                await registry.add(conn, _to_row(entry, now, now))
                await _journal(audit, conn, "ae-add", entry)
        except DriverError as exc:
            if registry.is_duplicate(exc):  # registered by a concurrent request meanwhile
                raise Conflict(f"the remote AE {title!r} is registered already") from None
            raise
        return entry

    async def update(
        self,
        ae_title: str,
        host: object,
        port: object,
        *,
        tls: object = False,
        description: object = "",
        audit: WriteAudit | None = None,
    ) -> RemoteAe:
        """Change a registered peer's address (404 if unknown, 409 if from the settings)."""
        title = ae_title.strip()
        entry = _registered(title, host, port, tls, description)
        self._writable(title)
        async with self._database().write() as conn:
            if not await registry.replace(conn, _to_row(entry, datetime.now(UTC))):
                raise NotFound(f"no remote AE {title!r} is registered")
            await _journal(audit, conn, "ae-update", entry)
        return entry

    async def remove(self, ae_title: str, *, audit: WriteAudit | None = None) -> RemoteAe:
        """Forget a registered peer (404 if unknown, 409 if from the settings)."""
        title = ae_title.strip()
        self._writable(title)
        async with self._database().write() as conn:
            row = await registry.get(conn, title)
            if row is None or not await registry.remove(conn, title):
                raise NotFound(f"no remote AE {title!r} is registered")
            entry = _from_row(row)
            await _journal(audit, conn, "ae-remove", entry)
        return entry

    def _writable(self, title: str) -> None:
        if title in self._configured:
            raise Conflict(
                f"the remote AE {title!r} is defined in the settings (dimse.remote_aes): "
                "change it there"
            )

    def _database(self) -> Database:
        if self._db is None:
            raise Conflict("remote AEs can only be registered with an index database")
        return self._db


def _registered(
    title: str, host: object, port: object, tls: object, description: object
) -> RemoteAe:
    """A peer of the index from a request's fields (400 when one is invalid): one to add, or a
    registered one's new address."""
    return RemoteAe(
        title,
        validate_host(host),
        validate_port(port),
        _tls(tls),
        _description(description),
        source="index",
    )


def _from_row(row: registry.AeRow) -> RemoteAe:
    return RemoteAe(row.ae_title, row.host, row.port, row.tls, row.description, source="index")


def _to_row(entry: RemoteAe, updated: datetime, created: datetime | None = None) -> registry.AeRow:
    return registry.AeRow(
        entry.ae_title,
        entry.host,
        entry.port,
        entry.tls,
        entry.description,
        created or updated,
        updated,
    )


async def _journal(
    audit: WriteAudit | None, conn: Connection, action: str, entry: RemoteAe
) -> None:
    if audit is None:
        return
    await audit.journal(
        conn,
        AuditRecord(
            action=action,
            outcome=Outcome.SUCCESS,
            detail=f"{entry.ae_title} {entry.address}{' tls' if entry.tls else ''}",
        ),
    )

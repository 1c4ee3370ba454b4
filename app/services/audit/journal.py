"""A write's audit row, committed with the write (the audit journal; the package's docstring
says why): :class:`WriteAudit` adds it, and the writer claims it when it chains the row that
stands for it, or the row itself.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.index.audit import journal as journal_table
from app.index.db import Connection
from app.services.audit.records import AuditRecord, storable

__all__ = ["Sweep", "WriteAudit", "claimed", "claims", "journaled"]


class WriteAudit:
    """The audit side of one write request (a STOW, a DELETE; a C-STORE association later):
    who writes, and the journal rows its transactions committed.

    A front end makes one with :meth:`AuditLog.for_write` and hands it to the service, which
    calls :meth:`journal` inside each transaction that writes; the front end's own row for the
    request then names the journal rows (``AuditRecord(supersedes=write.release())``), which it
    stands for (see the package's docstring).
    """

    __slots__ = ("_open", "actor", "client_id", "journaled", "request_id", "source")

    def __init__(
        self,
        open_rows: set[int],
        *,
        actor: str | None = None,
        client_id: str | None = None,
        source: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.actor = actor
        self.client_id = client_id
        self.source = source
        self.request_id = request_id
        #: the journal rows added so far (one of a transaction rolled back names no row: claiming
        #: it finds nothing)
        self.journaled: list[int] = []
        #: the log's journal rows whose request is still running (never swept by age)
        self._open = open_rows

    async def journal(self, conn: Connection, event: AuditRecord) -> None:
        """Add ``event`` (the write's action, count, UIDs) to the journal, in the transaction
        of ``conn``, the write's own: it commits, or not, with the write."""
        values = {name: getattr(event, name) for name in journal_table.FIELDS}
        values.update(
            actor=self.actor,
            client_id=self.client_id,
            source=self.source,
            request_id=self.request_id,
        )
        # PostgreSQL text holds no NUL (nor UTF-8 a surrogate): such a value must not fail the
        # write it rides with
        row_id = await journal_table.add(
            conn, {name: storable(value) for name, value in values.items()}
        )
        self.journaled.append(row_id)
        self._open.add(row_id)

    def release(self) -> tuple[int, ...]:
        """The journal rows for the request's own row to stand for; from now on they may be
        chained on their own (by a sweep) should that row never be written."""
        self._open.difference_update(self.journaled)
        return tuple(self.journaled)


@dataclass(frozen=True, slots=True)
class Sweep:
    """Queued to make the writer chain the journal rows written before ``cutoff`` that no
    request row will stand for (:meth:`AuditLog.recover`)."""

    cutoff: datetime


def claims(batch: Sequence[AuditRecord]) -> list[int]:
    """The journal rows the transaction chaining ``batch`` deletes."""
    return [i for e in batch for i in (*e.supersedes, e.journal_id) if i is not None]


def claimed(batch: Sequence[AuditRecord], taken: set[int]) -> list[AuditRecord]:
    """``batch`` without the journal rows this transaction did not delete: another writer
    chained them (a request's own row is chained whatever it stands for)."""
    return [e for e in batch if e.journal_id is None or e.journal_id in taken]


def journaled(row: dict[str, Any]) -> AuditRecord:
    """A journal row as the event to chain in its place (it claims the row)."""
    return AuditRecord(**{name: row[name] for name in journal_table.FIELDS}, journal_id=row["id"])

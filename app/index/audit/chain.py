"""The audit writer's transaction: append a batch to the hash chain (``audit_event``).

One transaction per batch (:meth:`ChainStore.transaction`): it takes the chain's lock, deletes
the journal rows the batch claims (:meth:`ChainAppend.claim`), reads the chain head and the
PatientIDs of the studies the batch names (:meth:`ChainAppend.head`), and writes the rows the
caller hashed from them (:meth:`ChainAppend.append`), all before its commit. The hashing itself
is ``app.services.audit``'s: this module only stores rows, in :data:`COLUMNS` order.

The lock serialises appends across processes, so concurrent writers keep one valid chain:
a PostgreSQL advisory lock held to the commit; SQLite serialises writers (``BEGIN IMMEDIATE``).

On PostgreSQL the batch runs on the driver's connection, kept from one batch to the next while
events keep coming (a pool check-out and return cost as much CPU as the rest of a small batch):
four round trips, begin + lock, head + PatientIDs, a binary COPY of the rows, commit (and, for a
batch holding a write's row, a fifth: the journal rows it claims). Through SQLAlchemy the same
work took six round trips and about 1 ms of CPU per batch, more than hashing and encoding a full
batch; the statements are fixed, so they go straight to asyncpg.
"""

import contextlib
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Final, NamedTuple, Protocol

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.audit import journal
from app.index.db import Database
from app.index.models import AuditEvent
from app.index.patients import patient_ids

__all__ = ["COLUMNS", "ChainAppend", "ChainHead", "ChainStore"]

#: the columns a written row fills, in the order of the values of :meth:`ChainAppend.append`'s
#: rows: the hashed content, ``requests``, then the chain's own
COLUMNS: Final = (*journal.FIELDS, "requests", "seq", "prev_hash", "hash")

#: pg_advisory_xact_lock key serialising chain appends across processes ("LBAUDIT")
_CHAIN_LOCK: Final = 0x4C4241554449540
#: simple-query protocol: several statements, one round trip (the lock key is a constant).
#: The head query below is a prepared statement for which PostgreSQL's default plan choice
#: (``auto``) kept making a custom plan per execution, 120 us of server CPU each time, more than
#: running it; the generic plan (index probes on ``study_uid`` and ``seq``) is as good for any
#: array of UIDs. SET LOCAL ends with the transaction.
_PG_BEGIN_AND_LOCK: Final = (
    "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; "
    f"SELECT pg_advisory_xact_lock({_CHAIN_LOCK})"
)
_PG_HEAD_AND_PATIENTS: Final = (
    "SELECT head.seq, head.hash, (SELECT json_object_agg(study_uid, patient_id)::text "
    "FROM study WHERE study_uid = ANY($1::text[])) "
    "FROM (SELECT 1) AS one LEFT JOIN "
    "(SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1) AS head ON true"
)


class ChainHead(NamedTuple):
    """The chain's last row, read under the lock, and the PatientIDs asked for with it."""

    #: the last row's ``seq`` (0: the chain is empty)
    seq: int
    #: the last row's hash (None: the chain is empty)
    hash: str | None
    #: the PatientID of each study asked for that is held
    patients: dict[str, str | None]


class ChainAppend(Protocol):
    """One batch's transaction, under the chain's lock (:meth:`ChainStore.transaction`)."""

    async def claim(self, ids: Sequence[int]) -> set[int]:
        """Delete the journal rows among ``ids``; the ids deleted (another writer's are gone)."""
        ...

    async def head(self, study_uids: Collection[str]) -> ChainHead:
        """The chain head, after the lock (no other writer can move it now), and the PatientIDs
        of ``study_uids``."""
        ...

    def append(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows (values in :data:`COLUMNS` order) to write; they are written at the end of the
        transaction, just before its commit."""
        ...


class _SqliteAppend:
    """A batch's transaction on SQLite (a write transaction: SQLite's one writer)."""

    __slots__ = ("conn", "rows")

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.rows: Sequence[tuple[Any, ...]] = ()

    async def claim(self, ids: Sequence[int]) -> set[int]:
        return await journal.claim(self.conn, ids)

    async def head(self, study_uids: Collection[str]) -> ChainHead:
        patients = await patient_ids(self.conn, study_uids)
        last = (
            await self.conn.execute(
                select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
            )
        ).first()
        if last is None:
            return ChainHead(0, None, patients)
        return ChainHead(last.seq, last.hash, patients)

    def append(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.rows = rows


async def _pg_append_and_commit(driver: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append ``rows`` with a binary COPY, then commit the batch's transaction.

    COPY costs the server half the CPU per row of an INSERT (no SQL text to parse, no values to
    convert from text), and the values travel as typed binary fields, so no row content is ever
    part of a statement's text.
    """
    await driver.copy_records_to_table("audit_event", records=rows, columns=COLUMNS)
    await driver.execute("COMMIT")


async def _abandon(conn: AsyncConnection, driver: Any) -> None:
    """After a failed write: roll back, or drop the connection rather than pool it half-done."""
    try:
        if not driver.is_closed() and driver.is_in_transaction():
            with contextlib.suppress(Exception):
                await driver.execute("ROLLBACK")
    finally:
        if driver.is_closed() or driver.is_in_transaction():
            with contextlib.suppress(Exception):
                await conn.invalidate()


class ChainStore:
    """The chain's side of the database for one audit writer (one per :class:`AuditLog`)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        #: PostgreSQL: the connection kept from one batch to the next (:meth:`release` returns it)
        self._held: AsyncConnection | None = None

    @property
    def holding(self) -> bool:
        """Whether a connection is kept for the next batch."""
        return self._held is not None

    async def backend_pid(self) -> int | None:
        """The PostgreSQL server process of the kept connection (None without one)."""
        if self._held is None:
            return None
        driver: Any = (await self._held.get_raw_connection()).driver_connection
        return int(driver.get_server_pid())

    def transaction(self) -> contextlib.AbstractAsyncContextManager[ChainAppend]:
        """One batch's transaction: commits at the end of the ``async with`` (rows appended
        just before), rolls back on an exception."""
        return self._sqlite() if self._db.is_sqlite else _PgTransaction(self)

    async def release(self) -> None:
        """Give the kept connection back (the writer has no event for now, or stops)."""
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):  # a dead connection is discarded by the pool
                await held.close()

    async def _connection(self) -> tuple[AsyncConnection, Any]:
        """The kept connection and its driver's (a new one when none is kept, or the server
        closed it while it was kept)."""
        if self._held is None:
            self._held = await self._db.engine.connect()
        conn = self._held
        driver: Any = (await conn.get_raw_connection()).driver_connection
        if driver.is_closed():  # the server closed it while it was kept: take another
            self._held = None
            with contextlib.suppress(Exception):
                await conn.invalidate()
                await conn.close()
            conn = self._held = await self._db.engine.connect()
            driver = (await conn.get_raw_connection()).driver_connection
        return conn, driver

    async def _drop(self, conn: AsyncConnection, driver: Any) -> None:
        """After a failure: roll back, or discard the connection, and keep none."""
        self._held = None
        try:
            await _abandon(conn, driver)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    @asynccontextmanager
    async def _sqlite(self) -> AsyncIterator[ChainAppend]:
        async with self._db.write() as conn:
            tx = _SqliteAppend(conn)
            yield tx
            if tx.rows:
                await conn.execute(
                    insert(AuditEvent), [dict(zip(COLUMNS, row, strict=True)) for row in tx.rows]
                )


class _PgTransaction:
    """A batch's transaction on the kept asyncpg connection: begin + lock on entry, COPY and
    commit on a normal exit, rollback (or the connection discarded) on an exception.

    A class rather than an ``asynccontextmanager``: the generator's machinery (its hooks, a weak
    reference set) was a third of this path's Python calls.
    """

    __slots__ = ("_conn", "_driver", "_store", "rows")

    def __init__(self, store: ChainStore) -> None:
        self._store = store
        self.rows: Sequence[tuple[Any, ...]] = ()

    async def __aenter__(self) -> ChainAppend:
        self._conn, self._driver = await self._store._connection()
        try:
            await self._driver.execute(_PG_BEGIN_AND_LOCK)
        except BaseException:
            await self._store._drop(self._conn, self._driver)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            await self._store._drop(self._conn, self._driver)
            return
        try:
            if self.rows:
                await _pg_append_and_commit(self._driver, self.rows)
            else:  # every journal row of the batch was another writer's to chain
                await self._driver.execute("COMMIT")
        except BaseException:
            await self._store._drop(self._conn, self._driver)
            raise

    async def claim(self, ids: Sequence[int]) -> set[int]:
        return await journal.claim_driver(self._driver, ids)

    async def head(self, study_uids: Collection[str]) -> ChainHead:
        # PostgreSQL text holds no NUL: a UID with one is held by no study (and would fail the
        # query); sorted, so equal sets are equal arrays
        wanted = [uid for uid in study_uids if "\x00" not in uid]
        wanted.sort()
        seq, prev, found = await self._driver.fetchrow(_PG_HEAD_AND_PATIENTS, wanted)
        return ChainHead(seq or 0, prev, orjson.loads(found or "{}"))

    def append(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.rows = rows

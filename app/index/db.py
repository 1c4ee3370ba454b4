"""Engine and transactions for the index: PostgreSQL (asyncpg) or SQLite (aiosqlite), same code.

SQLite is the embedded default: it runs in WAL mode with a busy timeout, and its write
transactions are serialised by an in-process lock (SQLite has one writer anyway; the lock turns
lock-upgrade failures into queueing). Each one also begins with ``BEGIN IMMEDIATE``, taking the
database's write lock before its first read: with several server processes on one file, a
transaction that read (a chain head, an existing instance) and then wrote could otherwise act on
what another process changed in between. PostgreSQL needs neither.

On PostgreSQL the prebuilt look-ups of the retrieve paths (one statement each, read-only, in
autocommit) also have a small asyncpg pool of their own (:meth:`Database.driver_connection`):
checking a connection out of SQLAlchemy's pool and back costs more CPU than the query does.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

#: the connection of a unit of work (:meth:`Database.write`, :meth:`Database.read`), as the
#: services pass it from the transaction they own to the repository functions they call
Connection: TypeAlias = AsyncConnection
#: what the database or its driver raised (connection lost, deadlock, a value refused), for the
#: services to catch without knowing the library that wraps the driver
DriverError: TypeAlias = DBAPIError


class Database:
    """The index database: an async engine plus transaction helpers."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._driver_pool: asyncpg.Pool | None = None
        self._driver_pool_size = max(2, pool_size // 2)
        self._driver_pool_lock = asyncio.Lock()
        if self.is_sqlite:
            self.engine: AsyncEngine = create_async_engine(
                self.url, echo=echo, hide_parameters=True, connect_args={"timeout": 30}
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(
                self.url,
                echo=echo,
                # a failed statement's message (logged by ingest) must not carry its values:
                # patient names, IDs and whole DICOM JSON documents
                hide_parameters=True,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=False,
                pool_recycle=3600,
            )

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: commits on normal exit, rolls back on an exception."""
        if self._write_lock is not None:
            async with self._write_lock, self.engine.begin() as conn:
                # pysqlite would begin only at the first INSERT, after the transaction's reads
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def read(self, *, autocommit: bool = False) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work (rolled back at the end).

        With ``autocommit``, PostgreSQL runs its statements without a transaction: READ
        COMMITTED gives each statement its own snapshot inside one too, so this only saves the
        BEGIN and ROLLBACK round trips. SQLite keeps its transaction (one snapshot for all).
        """
        async with self.engine.connect() as conn:
            if autocommit and not self.is_sqlite:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A bare asyncpg connection (PostgreSQL with asyncpg only) for one read-only statement
        in autocommit: no transaction is begun, and none may be left open."""
        pool = self._driver_pool or await self._open_driver_pool()
        async with pool.acquire() as conn:
            yield conn

    async def _open_driver_pool(self) -> asyncpg.Pool:
        async with self._driver_pool_lock:
            if self._driver_pool is None:
                if self.engine.dialect.driver != "asyncpg":
                    raise RuntimeError("driver_connection() is for PostgreSQL with asyncpg")
                # the connect arguments SQLAlchemy would use (host, port, user, ssl, ...) minus
                # its own options for its asyncpg adapter
                _, kwargs = self.engine.dialect.create_connect_args(self.url)
                kwargs.pop("prepared_statement_cache_size", None)
                kwargs.pop("prepared_statement_name_func", None)
                self._driver_pool = await asyncpg.create_pool(
                    min_size=1,
                    max_size=self._driver_pool_size,
                    reset=_keep_session,
                    **kwargs,
                )
            return self._driver_pool

    def pool_status(self) -> dict[tuple[str, str], int]:
        """Connections of this process's pools by (pool, state): SQLAlchemy's (in_use, idle,
        overflow) and, once open, the driver pool of PostgreSQL look-ups (in_use, idle)."""
        status: dict[tuple[str, str], int] = {}
        pool = self.engine.pool
        checkedout = getattr(pool, "checkedout", None)
        if callable(checkedout):  # a QueuePool (PostgreSQL, and SQLite files)
            status["sqlalchemy", "in_use"] = int(checkedout())
            status["sqlalchemy", "idle"] = int(pool.checkedin())  # type: ignore[attr-defined]
            status["sqlalchemy", "overflow"] = max(0, int(pool.overflow()))  # type: ignore[attr-defined]
        driver = self._driver_pool
        if driver is not None:
            idle = driver.get_idle_size()
            status["driver", "in_use"] = driver.get_size() - idle
            status["driver", "idle"] = idle
        return status

    async def check(self) -> None:
        """Raise unless the database answers (readiness probe)."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        pool, self._driver_pool = self._driver_pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except TimeoutError:  # a connection still checked out: do not wait for it
                pool.terminate()
        await self.engine.dispose()


#: PostgreSQL SQLSTATE classes of errors caused by the values written: 22 data exception (a value
#: out of range, too long, NUL in text), 23 integrity constraint violation, 54 program limit
#: exceeded (an index entry too large)
_DATA_STATES = ("22", "23", "54")
#: integrity violations that are races, not data: a unique key or a parent another transaction
#: took or removed (SQLSTATE, SQLite extended result code)
_RACES = ("23505", "23503", "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_FOREIGNKEY")


def is_data_error(exc: BaseException) -> bool:
    """Whether a failed write was refused for the values it wrote (the data, not the database's
    resources or availability; a unique or foreign key race is not a data error).

    sqlite3 raises a bare ``OverflowError`` for an integer beyond 64 bits.
    """
    if isinstance(exc, OverflowError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    state = getattr(exc.orig, "sqlstate", None)  # asyncpg
    if isinstance(state, str):
        return state[:2] in _DATA_STATES and state not in _RACES
    if isinstance(exc, DataError):  # sqlite3: a string or blob too big
        return True
    code = getattr(exc.orig, "sqlite_errorname", None)
    return isinstance(exc, IntegrityError) and code not in _RACES


#: failures a transaction may not meet when run again: a deadlock, a serialization failure
#: (SQLSTATE 40P01, 40001), SQLite's busy database
_CONTENTION = ("deadlock", "could not serialize", "database is locked", "40P01", "40001")
#: a parent row (a study, a series) a concurrent DELETE removed: a retry looks it up again and
#: recreates it (SQLSTATE 23503, SQLite's FOREIGN KEY constraint)
_LOST_PARENT = ("foreign key", "FOREIGN KEY", "23503")


def is_retryable(exc: DriverError, *, lost_parent: bool = False) -> bool:
    """Whether a failed transaction may succeed when run again: it met another transaction
    (a deadlock, a serialization failure, a locked database) or, with ``lost_parent``, a parent
    row another transaction deleted meanwhile."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    markers = _CONTENTION + _LOST_PARENT if lost_parent else _CONTENTION
    return any(marker in text for marker in markers)


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """The driver pool's reset on release: none. Its connections only ever run single read-only
    statements in autocommit, which leave no session state; asyncpg's default reset would cost
    a round trip (advisory unlocks, CLOSE ALL, UNLISTEN, RESET ALL) per look-up."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    # WAL is a property of the database file, set once (by migrate.upgrade): switching to it
    # does not wait for a busy database, so a new connection only asks when the file is not
    # in WAL mode yet
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged instance survives power loss
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()

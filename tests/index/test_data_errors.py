"""Which database errors a written value causes (``app.index.db.is_data_error``), and which
are worth running the transaction again (``is_retryable``), on both databases."""

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.index.db import Database, DriverError, is_data_error, is_retryable

_STUDY = "INSERT INTO study (study_uid, {column}, attrs_json) VALUES (:uid, :value, '')"


async def _error(db: Database, sql: str, **values: object) -> BaseException | None:
    """What writing ``sql`` raises (None: the database took it)."""
    try:
        async with db.write() as conn:
            await conn.execute(text(sql), values)
    except Exception as exc:
        return exc
    return None


def _data(error: BaseException | None) -> bool | None:
    """Whether ``error`` is a data error (None: there was no error)."""
    return None if error is None else is_data_error(error)


async def test_values_beyond_the_columns_are_data_errors(db: Database) -> None:
    beyond = await _error(db, _STUDY.format(column="num_series"), uid="1.1", value=2**63)
    assert _data(beyond) is True
    nul = await _error(db, _STUDY.format(column="patient_id"), uid="1.2", value="a\x00b")
    long = await _error(db, _STUDY.format(column="timezone_offset"), uid="1.3", value="+" * 17)
    # SQLite keeps both
    expected = None if db.is_sqlite else True
    assert (_data(nul), _data(long)) == (expected, expected)


async def test_races_and_other_failures_are_not(db: Database) -> None:
    assert await _error(db, _STUDY.format(column="patient_id"), uid="1.4", value="P") is None
    # a unique key another row holds
    again = await _error(db, _STUDY.format(column="patient_id"), uid="1.4", value="P")
    assert _data(again) is False
    # a parent a DELETE removed
    orphan = await _error(
        db, "INSERT INTO series (series_uid, study_id, attrs_json) VALUES ('1.5', 999999, '')"
    )
    assert _data(orphan) is False
    assert _data(await _error(db, "SELECT * FROM no_such_table")) is False
    assert _data(OSError("connection reset")) is False


async def test_a_lost_parent_is_retryable_only_where_the_caller_recreates_it(
    db: Database,
) -> None:
    """A parent a concurrent DELETE removed (ingest looks it up again and recreates it, a
    delete does not); a unique key another row holds is never worth a retry."""
    orphan = await _error(
        db, "INSERT INTO series (series_uid, study_id, attrs_json) VALUES ('1.6', 999999, '')"
    )
    assert isinstance(orphan, DriverError)
    assert is_retryable(orphan, lost_parent=True)
    assert not is_retryable(orphan)
    assert await _error(db, _STUDY.format(column="patient_id"), uid="1.7", value="P") is None
    again = await _error(db, _STUDY.format(column="patient_id"), uid="1.7", value="P")
    assert isinstance(again, DriverError)
    assert not is_retryable(again, lost_parent=True)


async def test_contention_is_retryable(db: Database) -> None:
    """PostgreSQL: a deadlock between two transactions; SQLite: a database another connection
    holds locked (here without a busy timeout, so at once)."""
    if db.is_sqlite:
        impatient = create_async_engine(db.url, connect_args={"timeout": 0})
        try:
            async with db.write():  # BEGIN IMMEDIATE: the write lock, to the end of the block
                with pytest.raises(DriverError) as locked:
                    async with impatient.connect() as conn:
                        await conn.exec_driver_sql("BEGIN IMMEDIATE")
        finally:
            await impatient.dispose()
        assert is_retryable(locked.value)
        return
    for uid in ("1.8", "1.9"):
        assert await _error(db, _STUDY.format(column="patient_id"), uid=uid, value="P") is None
    update = text("UPDATE study SET patient_id = 'Q' WHERE study_uid = :uid")
    first_locked, second_locked = asyncio.Event(), asyncio.Event()

    async def cross(mine: str, theirs: str, locked: asyncio.Event, other: asyncio.Event) -> None:
        async with db.write() as conn:
            await conn.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
            await conn.execute(update, {"uid": mine})
            locked.set()
            await other.wait()
            await conn.execute(update, {"uid": theirs})

    outcomes = await asyncio.wait_for(
        asyncio.gather(
            cross("1.8", "1.9", first_locked, second_locked),
            cross("1.9", "1.8", second_locked, first_locked),
            return_exceptions=True,
        ),
        30,
    )
    [deadlock] = [o for o in outcomes if isinstance(o, BaseException)]  # the other committed
    assert isinstance(deadlock, DriverError)
    assert is_retryable(deadlock)

"""The audit writer's transaction (``app.index.audit.chain``), on both databases: the head and
PatientIDs read under the chain's lock, rows appended at the commit and none after a failure,
journal rows claimed by one transaction only, one appending transaction at a time."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

from app.index import migrate
from app.index.audit import events, journal
from app.index.audit.chain import COLUMNS, ChainHead, ChainStore
from app.index.db import Database

GENESIS = "0" * 64
STUDY = "1.2.826.0.1.3680043.8.498.1"


def _hash(seq: int) -> str:
    """A stand-in hash (this layer stores hashes; ``app.services.audit.chain`` makes them)."""
    return f"{seq:064x}"


def _row(seq: int, **fields: Any) -> tuple[Any, ...]:
    """A row to append after ``seq - 1``, values in :data:`COLUMNS` order."""
    values: dict[str, Any] = dict.fromkeys(COLUMNS)
    values.update(time=datetime.now(UTC), action="search", outcome="success")
    values.update(fields, seq=seq, prev_hash=_hash(seq - 1) if seq > 1 else GENESIS)
    values["hash"] = _hash(seq)
    return tuple(values[name] for name in COLUMNS)


def _journal_values() -> dict[str, Any]:
    values: dict[str, Any] = dict.fromkeys(journal.FIELDS)
    values.update(time=datetime.now(UTC), action="store", outcome="success", count=1)
    return values


@pytest_asyncio.fixture
async def db(fresh_database_url: str) -> AsyncIterator[Database]:
    """A database of its own: the chain cannot be emptied (PostgreSQL refuses it)."""
    await migrate.upgrade(fresh_database_url)
    database = Database(fresh_database_url)
    async with database.write() as conn:
        await conn.execute(
            text("INSERT INTO study (study_uid, patient_id, attrs_json) VALUES (:uid, 'P1', '')"),
            {"uid": STUDY},
        )
    try:
        yield database
    finally:
        await database.close()


async def _stored(db: Database) -> list[int]:
    async with db.read() as conn:
        return [row["seq"] for row in await events.after(conn, None)]


async def test_rows_follow_the_head_and_a_failed_batch_leaves_nothing(db: Database) -> None:
    store = ChainStore(db)
    try:
        async with store.transaction() as tx:
            # a UID with a NUL (PostgreSQL text holds none) is simply held by no study
            head = await tx.head({STUDY, "9.9.9", "1.2\x00"})
            assert head == ChainHead(0, None, {STUDY: "P1"})
            tx.append([_row(1, study_uid=STUDY, patient_id="P1"), _row(2, actor="dr")])
        assert store.holding is not db.is_sqlite  # PostgreSQL keeps it for the next batch
        async with store.transaction() as tx:
            assert await tx.head(set()) == ChainHead(2, _hash(2), {})
        stored = await _stored(db)
        assert stored == [1, 2]

        async def failing_batch() -> None:
            async with store.transaction() as tx:
                await tx.head(set())
                tx.append([_row(3)])
                raise RuntimeError("hashing failed")

        with pytest.raises(RuntimeError, match="hashing failed"):
            await failing_batch()
        assert not store.holding  # never pooled, nor kept, half-done
        assert await _stored(db) == [1, 2]
        async with store.transaction() as tx:  # the next batch takes a connection again
            assert (await tx.head(set())).seq == 2
            tx.append([_row(3)])
        assert await _stored(db) == [1, 2, 3]
    finally:
        await store.release()
    assert not store.holding


async def test_a_journal_row_is_claimed_by_one_transaction(db: Database) -> None:
    async with db.write() as conn:
        ids = [await journal.add(conn, _journal_values()) for _ in range(3)]
    first, second = ChainStore(db), ChainStore(db)
    try:
        async with first.transaction() as tx:
            assert await tx.claim([ids[0], ids[1], ids[1], 10**9]) == {ids[0], ids[1]}
        async with second.transaction() as tx:
            assert await tx.claim(ids) == {ids[2]}  # the others are gone
        async with db.write() as conn:
            kept = await journal.add(conn, _journal_values())

        async def failing_claim() -> None:
            async with first.transaction() as tx:
                assert await tx.claim([kept]) == {kept}
                raise RuntimeError("the batch failed")

        with pytest.raises(RuntimeError, match="the batch failed"):
            await failing_claim()
        async with db.read() as conn:  # a claim rolled back leaves its row for a later batch
            assert [row["id"] for row in await journal.rows(conn, [*ids, kept])] == [kept]
    finally:
        await first.release()
        await second.release()


async def test_one_appending_transaction_at_a_time(db: Database) -> None:
    """Two stores on two engines (two processes): the second waits for the first's commit, then
    reads the head it left."""
    other = Database(str(db.url.render_as_string(hide_password=False)))
    first, second = ChainStore(db), ChainStore(other)
    entered = asyncio.Event()

    async def append_next() -> int:
        async with second.transaction() as tx:
            entered.set()
            head = await tx.head(set())
            tx.append([_row(head.seq + 1)])
            return head.seq

    try:
        async with first.transaction() as tx:
            await tx.head(set())
            tx.append([_row(1)])
            waiting = asyncio.create_task(append_next())
            await asyncio.sleep(0.3)
            assert not entered.is_set()  # the chain's lock is held to the commit
        assert await asyncio.wait_for(waiting, 30) == 1
        assert await _stored(db) == [1, 2]
    finally:
        await first.release()
        await second.release()
        await other.close()

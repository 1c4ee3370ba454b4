"""The audit writer's storage path: rows stored exactly as recorded (quotes, backslashes, any
text), a failed batch rolled back and written again in full, the writer's connection returned."""

import asyncio
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.index import migrate
from app.index.audit import chain as chain_table
from app.index.db import Database
from app.index.models import AUDIT_KEY_COLUMNS
from app.services.audit import AuditFilter, AuditLog, AuditRecord
from app.services.audit import chain as audit_chain
from app.services.audit import writer as audit_writer
from tests.auth.helpers import auth_client, auth_settings

AWKWARD = [
    "it's",
    "''",
    "\\",
    "back\\slash\\'quote",
    "E'\\x41'",
    "'); DROP TABLE audit_event; --",
    '{"json": ["looking", 1]}',
    "line\nbreak\ttab\r",
    "ünïcødé 日本語 🩻",
    "$$ dollar $tag$",
]


async def test_rows_are_stored_exactly_as_recorded(fresh_database_url: str) -> None:
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=0.05)
    try:
        when = [
            datetime(2026, 12, 4, 18, 30, 5, tzinfo=UTC),  # no microseconds
            datetime(2026, 12, 4, 18, 30, 5, 123456, tzinfo=UTC),
        ]
        for i, text in enumerate(AWKWARD):
            await audit.record(
                AuditRecord(
                    action="search",
                    outcome="success",
                    status=200,
                    actor=text,
                    client_id=text[:10],
                    detail=text,
                    request_id=f"r{i}",
                    count=i,
                    time=when[i % 2],
                )
            )
        await audit.flush()
        items, total = await audit.search(AuditFilter(), limit=100, offset=0)
        assert total == len(AWKWARD)
        by_request = {item["request_id"]: item for item in items}
        for i, text in enumerate(AWKWARD):
            item = by_request[f"r{i}"]
            assert (item["actor"], item["detail"], item["client_id"]) == (text, text, text[:10])
            assert item["count"] == i
            assert item["time"] == when[i % 2].isoformat().replace("+00:00", "Z")
        report = await audit.verify()
        assert report.problems == []
        assert report.rows == len(AWKWARD)
    finally:
        await audit.close()
        await db.close()


async def test_a_failed_batch_is_written_again_in_full(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first write fails mid-transaction (on PostgreSQL after its rows were copied, before
    the commit): nothing of it stays, the retry writes it all."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=0.05)
    failures = 0
    if db.is_sqlite:
        real = audit._write

        async def failing(batch: Any) -> None:
            nonlocal failures
            if failures == 0:
                failures += 1
                raise OSError("the database went away")
            await real(batch)

        monkeypatch.setattr(audit, "_write", failing)
    else:
        append = chain_table._pg_append_and_commit

        async def broken(driver: Any, rows: Any) -> None:
            nonlocal failures
            if failures == 0:
                failures += 1
                await driver.copy_records_to_table(
                    "audit_event",
                    records=rows,
                    columns=chain_table.COLUMNS,
                )
                await driver.execute("SELECT * FROM audit_event_missing")  # then the commit fails
            await append(driver, rows)

        monkeypatch.setattr(chain_table, "_pg_append_and_commit", broken)
    try:
        for i in range(5):
            await audit.record(AuditRecord(action="search", outcome="success", count=i))
        await asyncio.wait_for(audit.flush(), 10)
        assert failures == 1
        items, total = await audit.search(AuditFilter(), limit=100, offset=0)
        assert total == 5
        assert sorted(i["count"] for i in items) == list(range(5))
        assert (await audit.verify()).ok
    finally:
        await audit.close()
        await db.close()


async def test_the_writer_gives_its_connection_back(fresh_database_url: str) -> None:
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=0)
    try:
        await audit.record(AuditRecord(action="search", outcome="success"))
        await audit.flush()
        if not db.is_sqlite:
            assert audit._chain.holding  # kept for the next batch...
            await asyncio.sleep(audit_writer._HOLD_SECONDS + 0.3)
            assert not audit._chain.holding  # ...and returned when no event came
        await audit.record(AuditRecord(action="search", outcome="success"))
        await audit.flush()
    finally:
        await audit.close()
    assert not audit._chain.holding
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    _, total = await AuditLog(db).search(AuditFilter(), limit=1, offset=0)
    assert total == 2
    await db.close()


async def test_a_kept_connection_the_server_closed_is_replaced(
    fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=0)
    try:
        await audit.record(AuditRecord(action="search", outcome="success"))
        await audit.flush()
        if db.is_sqlite:  # SQLite's writer keeps no connection: nothing to close under it
            assert not audit._chain.holding
        else:
            assert audit._chain.holding
            pid = await audit._chain.backend_pid()
            async with db.engine.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await asyncio.sleep(0.3)
        await audit.record(AuditRecord(action="search", outcome="success"))
        await asyncio.wait_for(audit.flush(), 10)
        assert "audit write failed" not in caplog.text
        _, total = await audit.search(AuditFilter(), limit=1, offset=0)
        assert total == 2
        assert (await audit.verify()).ok
    finally:
        await audit.close()
        await db.close()


def _batch_sizes(audit: AuditLog) -> list[int]:
    """The sizes of the batches ``audit`` writes from now on, in order (a list it fills)."""
    sizes: list[int] = []
    write = audit._write

    async def counted(batch: Any) -> None:
        sizes.append(len(batch))
        await write(batch)

    audit._write = counted  # type: ignore[method-assign]
    return sizes


@pytest.mark.parametrize(("queue_size", "batch_size"), [(10000, 4), (2, 100)])
async def test_a_full_batch_or_queue_ends_the_linger(
    fresh_database_url: str, queue_size: int, batch_size: int
) -> None:
    """With a long linger, a full batch (or a full queue) is written at once, not after it."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    linger = 4.0
    audit = AuditLog(db, linger=linger, batch_size=batch_size, queue_size=queue_size)
    sizes = _batch_sizes(audit)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        for i in range(8):  # a full queue makes record() wait for the writer: never the linger
            await audit.record(AuditRecord(action="search", outcome="success", count=i))
        assert loop.time() - started < linger / 2
        if queue_size >= batch_size:  # two full batches: written without lingering
            await asyncio.wait_for(audit.flush(), linger / 2)
            assert sizes == [batch_size, batch_size]
        await audit.flush()
        items, total = await audit.search(AuditFilter(), limit=100, offset=0)
        assert total == 8
        assert sorted(i["count"] for i in items) == list(range(8))
        assert (await audit.verify()).ok
    finally:
        await audit.close()
        await db.close()


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 12, 4, 18, 30, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 0, 0, 500000, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 6, 1, 12, 0, 0, 500000),  # naive: UTC, as SQLite hands it back
    ],
)
def test_the_hashed_time_is_the_text_rows_were_always_hashed_with(when: datetime) -> None:
    """Rows written before keep verifying: the stamp is the old strftime text exactly."""
    aware = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    assert audit_chain.stamp(when) == aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_a_nul_in_a_requested_path_never_stalls_the_log(
    database_url: str, tmp_path: Path
) -> None:
    """PostgreSQL stores no NUL in text: the event is kept with U+FFFD instead, and the log
    goes on (before, such a batch failed forever and every later event waited behind it)."""
    settings = auth_settings(database_url, tmp_path / "data")
    async with auth_client(settings) as (services, http, tokens):
        response = await http.get(
            "/dicom-web/studies/1.2%003/metadata",
            headers={**tokens.headers(), "X-Request-ID": "nul-in-path"},
        )
        assert response.status_code == 400
        await asyncio.wait_for(services.audit.flush(), 10)
        items, _ = await services.audit.search(AuditFilter(), limit=1000, offset=0)
        (item,) = [i for i in items if i["request_id"] == "nul-in-path"]
        assert item["study_uid"] == "1.2\ufffd3"
        assert (await services.audit.verify()).ok


async def test_a_lone_surrogate_in_a_signed_subject_never_stalls_the_log(
    database_url: str, tmp_path: Path
) -> None:
    """A JSON token may spell a lone UTF-16 surrogate (``"\\ud800"``); decoded, the subject is a
    ``str`` that no UTF-8 encoder takes, so the writer's hashing failed on it forever and every
    later event waited behind it. It is kept with U+FFFD instead, in the hash and in the row."""
    settings = auth_settings(database_url, tmp_path / "data")
    async with auth_client(settings) as (services, http, tokens):
        headers = tokens.headers(subject="dr \ud800 who")
        for request_id, path in (("surrogate-1", "/studies"), ("surrogate-2", "/series")):
            response = await http.get(
                f"/dicom-web{path}", headers={**headers, "X-Request-ID": request_id}
            )
            assert response.status_code == 204  # allowed, and nothing stored yet
        await asyncio.wait_for(services.audit.flush(), 10)
        items, _ = await services.audit.search(AuditFilter(), limit=1000, offset=0)
        stored = {i["request_id"]: i for i in items}
        assert stored["surrogate-1"]["actor"] == stored["surrogate-2"]["actor"] == "dr \ufffd who"
        assert (await services.audit.verify()).ok


async def test_an_event_the_database_refuses_is_replaced_by_a_row_saying_so(
    fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A count beyond any integer column fails its batch on every retry (client-side on both
    dialects); the writer, finding the database otherwise able to write, narrows the batch down
    to that event, stores every other event as recorded, and writes in the refused one's place a
    failure row naming its action, time and request id, with the whole event in the error log.
    Before, the log stalled for good and, through back-pressure, so did every request."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=0.05)
    when = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    try:
        for i in range(7):
            await audit.record(
                AuditRecord(
                    action="retrieve",
                    outcome="success",
                    status=200,
                    actor="viewer",
                    study_uid=f"1.2.{i}",
                    count=2**70 if i == 4 else i,
                    request_id=f"r{i}",
                    time=when + timedelta(seconds=i),
                )
            )
        with caplog.at_level("ERROR", logger="app.services.audit"):
            await asyncio.wait_for(audit.flush(), 60)
        items, total = await audit.search(AuditFilter(), limit=100, offset=0)
        assert total == 7
        stored = {item["request_id"]: item for item in items}
        for i in (0, 1, 2, 3, 5, 6):
            assert (stored[f"r{i}"]["count"], stored[f"r{i}"]["study_uid"]) == (i, f"1.2.{i}")
        stand_in = stored["r4"]
        assert (stand_in["action"], stand_in["outcome"], stand_in["count"]) == (
            "retrieve",
            "failure",
            None,
        )
        assert stand_in["time"] == "2026-12-05T09:00:04Z"
        assert stand_in["detail"].startswith("audit event could not be stored:")
        assert stand_in["study_uid"] is None  # nothing of the refused content is guessed at
        assert [i["request_id"] for i in sorted(items, key=lambda i: i["seq"])] == [
            f"r{i}" for i in range(7)
        ]  # the chain keeps the order they were recorded in
        (logged,) = [r for r in caplog.records if "could not be stored" in r.getMessage()]
        assert "1.2.4" in logged.getMessage()
        assert str(2**70) in logged.getMessage()
        assert (await audit.verify()).ok
        # and the writer goes on as before
        await audit.record(AuditRecord(action="search", outcome="success", request_id="after"))
        await asyncio.wait_for(audit.flush(), 10)
        assert (await audit.search(AuditFilter(), limit=1, offset=0))[1] == 8
    finally:
        await audit.close()
        await db.close()


async def test_an_event_that_fails_once_on_its_own_is_not_replaced(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Narrowing down tries each single event twice: one that fails once and then goes in (a
    passing failure, not a refusal) is stored as recorded, never replaced by a failure row."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=0.05)
    real = audit._write
    tried: set[str | None] = set()

    async def flaky(batch: Any) -> None:
        if len(batch) > 1:
            raise OSError("the batch went away")  # every batch of several fails, always
        if batch[0].request_id not in tried:  # each event fails once on its own
            tried.add(batch[0].request_id)
            raise OSError("the event went away")
        await real(batch)

    monkeypatch.setattr(audit, "_write", flaky)
    monkeypatch.setattr(audit_writer, "_RETRY_DELAYS", (0.0,))
    try:
        for i in range(5):
            await audit.record(
                AuditRecord(action="search", outcome="success", count=i, request_id=f"r{i}")
            )
        await asyncio.wait_for(audit.flush(), 10)
        items, total = await audit.search(AuditFilter(), limit=100, offset=0)
        assert total == 5
        assert sorted((i["request_id"], i["count"], i["outcome"]) for i in items) == [
            (f"r{i}", i, "success") for i in range(5)
        ]
        assert (await audit.verify()).ok
    finally:
        await audit.close()
        await db.close()


async def test_an_unwritable_database_never_costs_an_event(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While no row at all can be written (here: every write fails, as when the disk is full
    or the database is read-only), nothing is replaced or dropped: the batch waits, whole, and
    is written as recorded once writes work again."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=0.05)
    real = audit._write
    attempts = 0
    healed = asyncio.Event()
    tried_long = asyncio.Event()  # well past the point where a refused event is looked for

    async def refusing(batch: Any) -> None:
        nonlocal attempts
        attempts += 1
        if attempts >= 40:
            tried_long.set()
        if not healed.is_set():
            raise OSError("could not extend file: No space left on device")
        await real(batch)

    monkeypatch.setattr(audit, "_write", refusing)
    monkeypatch.setattr(audit_writer, "_RETRY_DELAYS", (0.0,))  # retry at once, many times
    try:
        for i in range(5):
            await audit.record(AuditRecord(action="search", outcome="success", count=i))
        flushed = asyncio.ensure_future(audit.flush())
        await asyncio.wait_for(tried_long.wait(), 30)
        assert not flushed.done()
        healed.set()
        await asyncio.wait_for(flushed, 10)
        items, total = await audit.search(AuditFilter(), limit=100, offset=0)
        assert total == 5
        assert sorted(i["count"] for i in items) == list(range(5))
        assert all(i["outcome"] == "success" for i in items)
        assert (await audit.verify()).ok
    finally:
        await audit.close()
        await db.close()


async def test_a_batch_is_hashed_in_slices_with_the_same_chain() -> None:
    """The writer returns to the event loop between slices of a batch; the rows (links,
    sequence numbers, hashes, PatientIDs) are those of hashing the batch in one go."""
    batch = [
        AuditRecord(action="retrieve", outcome="success", count=i, study_uid=f"1.2.{i % 3}")
        for i in range(3 * audit_chain.SLICE + 5)
    ]
    patients = {"1.2.0": "P0", "1.2.2": "P2"}
    switches = 0

    async def count_switches() -> None:
        nonlocal switches
        while True:
            await asyncio.sleep(0)
            switches += 1

    counter = asyncio.create_task(count_switches())
    await asyncio.sleep(0)
    before = switches
    sliced = await audit_chain.chain_rows_in_slices(batch, patients, 41, "ab" * 32)
    counter.cancel()
    assert sliced == audit_chain.chain_rows(batch, patients, 41, "ab" * 32)
    assert [audit_chain.named(row)["seq"] for row in sliced] == list(range(42, 42 + len(batch)))
    assert switches - before >= 3  # other tasks ran between the four slices


def test_only_real_nuls_are_replaced_and_the_hash_covers_what_is_stored() -> None:
    """A NUL anywhere becomes U+FFFD; text that merely spells out JSON's ``\\u0000`` escape is
    kept as it is; either way the stored hash is :func:`row_hash` of the stored content."""
    batch = [
        AuditRecord(action="search", outcome="success", actor="a\x00b", detail="x\x00"),
        AuditRecord(action="search", outcome="success", actor="\\u0000", detail="plain"),
    ]
    chained = audit_chain.chain_rows(batch, {}, 0, audit_chain.GENESIS)
    rows = [audit_chain.named(row) for row in chained]
    assert (rows[0]["actor"], rows[0]["detail"]) == ("a\ufffdb", "x\ufffd")
    assert (rows[1]["actor"], rows[1]["detail"]) == ("\\u0000", "plain")
    prev = audit_chain.GENESIS
    for row in rows:
        content = {name: row[name] for name in audit_chain.CONTENT_FIELDS}
        assert row["prev_hash"] == prev
        assert row["hash"] == audit_chain.row_hash(prev, row["seq"], content)
        prev = row["hash"]


async def test_deferred_events_are_built_by_the_writer_and_never_lost(
    fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """record_later: the writer builds the event with its batch; one whose builder fails still
    leaves a row (a failure saying so), and the events around it are written as usual."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=0.05)
    built: list[int] = []

    def build(n: int) -> AuditRecord:
        built.append(n)
        return AuditRecord(action="search", outcome="success", request_id=f"later-{n}")

    def broken() -> AuditRecord:
        raise KeyError("route")

    try:
        await audit.record_later(lambda: build(1))
        await audit.record_later(broken)
        await audit.record_later(lambda: build(2))
        assert built == []  # nothing built on the caller's path
        await audit.flush()
        assert built == [1, 2]
        items, total = await audit.search(AuditFilter(), limit=10, offset=0)
        assert total == 3
        by_seq = sorted(items, key=lambda i: i["seq"])
        assert [i["request_id"] for i in by_seq] == ["later-1", None, "later-2"]
        assert (by_seq[1]["action"], by_seq[1]["outcome"]) == ("unknown", "failure")
        assert "KeyError" in by_seq[1]["detail"]
        assert "audit event could not be built" in caplog.text
        assert (await audit.verify()).ok
    finally:
        await audit.close()
        await db.close()


async def test_flush_and_close_end_the_linger(fresh_database_url: str) -> None:
    """A long linger never delays a caller who waits for the log (a deletion flushes it first)."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    linger = 30.0
    audit = AuditLog(db, linger=linger)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        # flushed before the writer has taken the event: it does not start to linger
        await audit.record(AuditRecord(action="search", outcome="success", count=1))
        await audit.flush()  # (wait_for would run it as a task, after the writer's first step)
        assert loop.time() - started < linger / 3
        # flushed while the writer lingers for more events: the linger ends
        await audit.record(AuditRecord(action="search", outcome="success", count=2))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(audit.flush(), 10)
        _, total = await audit.search(AuditFilter(), limit=10, offset=0)
        assert total == 2
        # the linger is back for the next batch, and close() ends it too
        await audit.record(AuditRecord(action="search", outcome="success", count=3))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(audit.close(), 10)
        assert loop.time() - started < linger / 3
        items, total = await audit.search(AuditFilter(), limit=10, offset=0)
        assert total == 3
        assert sorted(i["count"] for i in items) == [1, 2, 3]
        assert (await audit.verify()).ok
    finally:
        await audit.close()
        await db.close()


async def test_a_large_batch_is_written_whole_and_in_order(fresh_database_url: str) -> None:
    """A batch of several slices (the writer returns to the event loop between them) is one
    transaction: every event, in the order recorded, one unbroken chain."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    events = audit_chain.SLICE * 12 + 5
    audit = AuditLog(db, linger=5, batch_size=events)
    sizes = _batch_sizes(audit)
    try:
        for n in range(events):
            await audit.record(
                AuditRecord(action="store", outcome="success", count=n, request_id=f"r{n}")
            )
        await audit.flush()
        assert sizes == [events]
        rows = [row async for row in audit.rows()]
        assert [r["count"] for r in rows] == list(range(events))
        assert [r["seq"] for r in rows] == list(range(1, events + 1))
        assert (await audit.verify()).ok
    finally:
        await audit.close()
        await db.close()


async def test_each_filter_finds_exactly_its_rows_pending_or_merged(
    fresh_database_url: str,
) -> None:
    """The admin filters (patient, study, actor, action, and any of them together) find exactly
    the rows with those values, awkward texts and values that look like another column's tag
    included, and values too long for an index entry. On PostgreSQL they go through the GIN
    index of revision 0008 (checked on the plan), both while the rows sit in its pending list
    and after the list is merged."""
    await migrate.upgrade(fresh_database_url)
    db = Database(fresh_database_url)
    audit = AuditLog(db, linger=0.02)
    # tag look-alikes, and values past the 500 characters the index keeps (larger than a GIN
    # entry may be, and two that differ only after them)
    values = [*AWKWARD, "p:P1", "s:1.2.3", "u:x", "P1", "1.2.3", "x", ""]
    # (pseudo-random, so that compression does not make them small)
    rng = random.Random(7)
    long = "".join(rng.choice("0123456789abcdef.") for _ in range(3000))
    values += [long, long + "y", "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(1500))]
    recorded = [
        AuditRecord(
            action=("search", "frames", "delete")[i % 3],
            outcome="success",
            actor=values[i % len(values)],
            patient_id=values[(i * 5) % len(values)] if i % 4 else None,
            study_uid=values[(i * 7) % len(values)][:64] if i % 6 else None,
            request_id=f"r{i}",
        )
        for i in range(120)
    ]
    keys = AUDIT_KEY_COLUMNS

    async def check() -> None:
        for n in range(len(recorded)):  # every key, alone and in pairs, of some row
            chosen = recorded[n]
            for wanted in (
                {keys[n % 4]: getattr(chosen, keys[n % 4])},
                {
                    keys[n % 4]: getattr(chosen, keys[n % 4]),
                    keys[(n + 1) % 4]: getattr(chosen, keys[(n + 1) % 4]),
                },
            ):
                if None in wanted.values():
                    continue
                expected = sorted(
                    str(e.request_id)
                    for e in recorded
                    if all(getattr(e, k) == v for k, v in wanted.items())
                )
                items, total = await audit.search(AuditFilter(**wanted), limit=500, offset=0)
                assert total == len(expected), wanted
                assert sorted(i["request_id"] for i in items) == expected, wanted
                exported = [r["request_id"] async for r in audit.rows(AuditFilter(**wanted))]
                assert sorted(exported) == expected, wanted

    try:
        for event in recorded:
            await audit.record(event)
        await audit.flush()
        await check()
        if not db.is_sqlite:
            async with db.read() as conn:
                await conn.execute(text("SET LOCAL enable_seqscan = off"))
                plan = "\n".join(
                    (
                        await conn.execute(
                            text(
                                "EXPLAIN SELECT seq FROM audit_event WHERE audit_keys("
                                "patient_id, study_uid, actor, action) @> ARRAY['p:P1']"
                            )
                        )
                    ).scalars()
                )
                assert "ix_audit_event_keys" in plan, plan
                pending = await conn.scalar(
                    text("SELECT gin_clean_pending_list('ix_audit_event_keys')")
                )
            assert pending > 0  # the rows were found above while pending, not merged
            await check()  # and again now that the pending list is merged into the index
        assert (await audit.verify()).ok
    finally:
        await audit.close()
        await db.close()

"""Audit aggregation: the reads of one caller on one series that reach the writer together become
one row counting them (a viewer's frame requests); everything else keeps a row of its own, and the
hash chain covers the count."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import text

from app.index import migrate
from app.index.db import Database
from app.services.audit import AuditFilter, AuditLog, AuditRecord, aggregate
from tests.auth.helpers import auth_client, auth_settings
from tests.factories import make_instance, multipart, stow_headers

ROOT = "/dicom-web"
FRAMES = "multipart/related; type=application/octet-stream"
T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def _frame(n: int, **fields: Any) -> AuditRecord:
    base: dict[str, Any] = {
        "action": "frames",
        "outcome": "success",
        "status": 200,
        "actor": "dr-a",
        "source": "10.0.0.1",
        "study_uid": "1.2",
        "series_uid": "1.2.3",
        "instance_uid": f"1.2.3.{n}",
        "request_id": f"r{n}",
        "detail": "GET /frames",
        "time": T0 + timedelta(milliseconds=n),
    }
    return AuditRecord(**(base | fields))


def test_reads_of_one_series_merge_and_count() -> None:
    batch = [_frame(n) for n in range(5)]
    before = [replace(e) for e in batch]
    [row] = aggregate(batch)
    assert row.requests == 5
    assert row.request_id == "r0"  # the first request's id, time and place
    assert row.time == T0
    assert row.instance_uid is None  # five instances: the series and study say what was read
    assert (row.study_uid, row.series_uid, row.actor) == ("1.2", "1.2.3", "dr-a")
    assert batch == before  # the caller's records are never changed


def test_one_instance_read_repeatedly_keeps_its_uid_and_sums_counts() -> None:
    batch = [_frame(0, instance_uid="1.2.3.9", count=n) for n in (2, 3, None, 4)]
    [row] = aggregate(batch)
    assert (row.requests, row.instance_uid, row.count) == (4, "1.2.3.9", 9)
    assert aggregate([_frame(0), _frame(1)])[0].count is None  # no count is not a count of 0


@pytest.mark.parametrize(
    "other",
    [
        {"actor": "dr-b"},
        {"client_id": "another-app"},
        {"source": "10.0.0.2"},
        {"outcome": "denied", "status": 403},
        {"status": 206},
        {"study_uid": "1.9", "series_uid": "1.9.1"},
        {"series_uid": "1.2.4"},
        {"patient_id": "P2"},
        {"action": "metadata"},
        {"detail": "GET /rendered"},
    ],
)
def test_anything_else_that_differs_keeps_its_own_row(other: dict[str, Any]) -> None:
    batch = [_frame(0), _frame(1, **other), _frame(2)]
    rows = aggregate(batch)
    assert [r.request_id for r in rows] == ["r0", "r1"]
    assert [r.requests for r in rows] == [2, None]


@pytest.mark.parametrize("action", ["store", "delete", "login-failure", "audit-query", "x"])
def test_writes_refusals_of_login_and_audit_queries_are_never_merged(action: str) -> None:
    batch = [_frame(n, action=action) for n in range(3)]
    assert aggregate(batch) == batch


def test_merged_rows_keep_the_batch_order() -> None:
    batch = [
        _frame(0),
        _frame(1, action="store"),
        _frame(2, series_uid="1.2.4"),
        _frame(3),
        _frame(4, series_uid="1.2.4"),
        _frame(5, action="store"),
    ]
    rows = aggregate(batch)
    assert [(r.request_id, r.requests) for r in rows] == [
        ("r0", 2),
        ("r1", None),
        ("r2", 2),
        ("r5", None),
    ]


async def test_aggregated_rows_are_chained_and_their_count_is_hashed(
    fresh_database_url: str,
) -> None:
    """Stored as merged, verified by the chain, and an edited ``requests`` is detected."""
    url = fresh_database_url
    await migrate.upgrade(url)
    db = Database(url)
    # first a row as written before aggregation existed (requests NULL, not hashed)
    plain = AuditLog(db, linger=0)
    await plain.record(_frame(99, request_id="old"))
    await plain.close()
    # then one batch of 11 events (queued before the writer runs, so none lingers)
    audit = AuditLog(db, linger=5, batch_size=11, aggregate=True)
    try:
        for n in range(6):
            await audit.record(_frame(n))
        for n in range(3):
            await audit.record(_frame(10 + n, actor="dr-b"))
        await audit.record(_frame(20, action="delete"))
        await audit.record(_frame(21, action="store"))  # the 11th: the batch is written
        await audit.flush()
        items, total = await audit.search(AuditFilter(), limit=100, offset=0)
        by_request = {i["request_id"]: i for i in items}
        assert total == 5, items
        assert by_request["r0"]["requests"] == 6
        assert by_request["r10"]["requests"] == 3
        assert by_request["r10"]["actor"] == "dr-b"
        assert by_request["r20"]["requests"] == 1  # a row for one request says 1
        assert by_request["old"]["requests"] == 1
        assert [i["seq"] for i in items] == [5, 4, 3, 2, 1]
        report = await audit.verify()
        assert report.ok, report.problems
        assert report.rows == 5

        if not db.is_sqlite:  # the owner switching the append-only trigger off first
            async with db.write() as conn:
                await conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
        async with db.write() as conn:  # 6 requests become 1: what a cover-up would try
            await conn.execute(text("UPDATE audit_event SET requests = 1 WHERE requests = 6"))
        report = await audit.verify()
        assert report.problems == ["seq 2: content changed after writing"]
    finally:
        await audit.close()
        await db.close()


async def _series(http: httpx.AsyncClient, headers: dict[str, str], n: int) -> list[str]:
    """Store ``n`` instances of one new series; their frame URLs."""
    study, series = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(n)]
    body = multipart(
        [
            make_instance(
                StudyInstanceUID=study,
                SeriesInstanceUID=series,
                SOPInstanceUID=sop,
                PatientID="PID-AGG",
                rows=8,
                columns=8,
            )
            for sop in sops
        ]
    )
    stored = await http.post(f"{ROOT}/studies", content=body, headers={**stow_headers(), **headers})
    assert stored.status_code == 200, stored.text
    return [f"{ROOT}/studies/{study}/series/{series}/instances/{sop}/frames/1" for sop in sops]


@pytest.mark.parametrize("aggregated", [True, False])
async def test_a_viewer_reading_a_series_leaves_one_row(
    database_url: str, tmp_path: Path, aggregated: bool
) -> None:
    """Through the app, as a viewer fetches a series frame by frame (the server's default), and
    with ``LIGHTBOX_AUTH__AUDIT_AGGREGATE=false``, a row per request."""
    extra = {} if aggregated else {"audit_aggregate": False}
    settings = auth_settings(database_url, tmp_path / "data", audit_linger_seconds=1, **extra)
    assert settings.auth.audit_aggregate is aggregated
    async with auth_client(settings) as (services, http, tokens):
        frames = await _series(http, tokens.headers(subject="uploader"), 8)
        viewer = {**tokens.headers(["read"], subject="viewer"), "Accept": FRAMES}
        await services.audit.flush()
        responses = await asyncio.gather(*(http.get(url, headers=viewer) for url in frames))
        assert all(r.status_code == 200 for r in responses), responses
        await services.audit.flush()
        study = frames[0].split("/")[3]
        items, _ = await services.audit.search(
            AuditFilter(study_uid=study, action="frames"), limit=100, offset=0
        )
        ids = {r.headers["x-request-id"] for r in responses}
        assert {i["request_id"] for i in items} <= ids
        assert sum(i["requests"] for i in items) == 8
        assert all(i["actor"] == "viewer" and i["patient_id"] == "PID-AGG" for i in items)
        if aggregated:
            assert len(items) == 1, items
            assert items[0]["instance_uid"] is None
        else:
            assert len(items) == 8
            assert {i["instance_uid"] for i in items} == {u.split("/")[7] for u in frames}
        assert (await services.audit.verify()).ok

"""The remote AE registry's SQL, on PostgreSQL and SQLite."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from app.index import aes as registry
from app.index.db import Database, DriverError


def _row(title: str, host: str = "10.0.0.1", port: int = 104) -> registry.AeRow:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    return registry.AeRow(title, host, port, False, "", now, now)


async def test_add_get_list_replace_remove(db: Database) -> None:
    async with db.write() as conn:
        await registry.add(conn, _row("WORKSTATION"))
        await registry.add(conn, _row("archive", "pacs.example", 11112))
    async with db.read() as conn:
        assert (await registry.get(conn, "WORKSTATION")) == _row("WORKSTATION")
        assert await registry.get(conn, "workstation") is None  # case-sensitive
        assert [r.ae_title for r in await registry.all_rows(conn)] == sorted(
            ["WORKSTATION", "archive"]
        )
    changed = replace(_row("archive"), host="10.9.9.9", port=4242, tls=True, description="old PACS")
    async with db.write() as conn:
        assert await registry.replace(conn, changed)
        assert not await registry.replace(conn, _row("NOBODY"))
    async with db.read() as conn:
        found = await registry.get(conn, "archive")
        assert found is not None
        assert (found.host, found.port, found.tls, found.description) == (
            "10.9.9.9",
            4242,
            True,
            "old PACS",
        )
    async with db.write() as conn:
        assert await registry.remove(conn, "archive")
        assert not await registry.remove(conn, "archive")
    async with db.read() as conn:
        assert [r.ae_title for r in await registry.all_rows(conn)] == ["WORKSTATION"]


async def test_a_title_is_unique(db: Database) -> None:
    async with db.write() as conn:
        await registry.add(conn, _row("CT1"))
    with pytest.raises(DriverError) as caught:
        async with db.write() as conn:
            await registry.add(conn, _row("CT1", "10.0.0.2"))
    assert registry.is_duplicate(caught.value)
    async with db.read() as conn:
        assert [r.host for r in await registry.all_rows(conn)] == ["10.0.0.1"]

"""The token registry's SQL (``issued_token``) on PostgreSQL and SQLite."""

from datetime import UTC, datetime, timedelta

from app.index import tokens
from app.index.db import Database
from app.index.tokens import TokenRow, TokenSearch, TokenState

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _row(jti: str, **fields: object) -> TokenRow:
    values: dict[str, object] = {
        "jti": jti,
        "kind": "cli",
        "subject": "alice",
        "scopes": ("read",),
        "study_uids": None,
        "patient_ids": None,
        "issued_at": NOW - timedelta(hours=1),
        "expires_at": NOW + timedelta(hours=1),
        "created_by": "cli:root",
    }
    values.update(fields)
    return TokenRow(**values)  # type: ignore[arg-type]


async def test_add_get_round_trip(db: Database) -> None:
    row = _row(
        "a" * 32,
        kind="share",
        scopes=("read", "write"),
        study_uids=("1.2.3", "1.2.4"),
        patient_ids=("P 1", "Müller^X"),
    )
    async with db.write() as conn:
        await tokens.add(conn, row)
    async with db.read() as conn:
        assert await tokens.get(conn, row.jti) == row
        assert await tokens.get(conn, "missing") is None


async def test_search_filters_states_and_pages(db: Database) -> None:
    rows = [
        _row("active1", issued_at=NOW - timedelta(minutes=3)),
        _row("active2", subject="bob", kind="session", issued_at=NOW - timedelta(minutes=2)),
        _row("expired", expires_at=NOW - timedelta(seconds=1)),
        _row("revoked", scopes=("read", "admin"), issued_at=NOW - timedelta(minutes=1)),
    ]
    async with db.write() as conn:
        for row in rows:
            await tokens.add(conn, row)
        done = await tokens.revoke(conn, "revoked", at=NOW, by="admin", reason="lost laptop")
    assert done is not None
    assert done[1] is True
    assert done[0].state(NOW) is TokenState.REVOKED
    assert (done[0].revoked_by, done[0].revoke_reason) == ("admin", "lost laptop")

    async def jtis(f: TokenSearch, limit: int = 10, offset: int = 0) -> tuple[list[str], int]:
        async with db.read() as conn:
            found, total = await tokens.search(conn, f, now=NOW, limit=limit, offset=offset)
        return [r.jti for r in found], total

    # newest first
    assert await jtis(TokenSearch()) == (["revoked", "active2", "active1", "expired"], 4)
    assert await jtis(TokenSearch(state=TokenState.ACTIVE)) == (["active2", "active1"], 2)
    assert await jtis(TokenSearch(state=TokenState.EXPIRED)) == (["expired"], 1)
    assert await jtis(TokenSearch(state=TokenState.REVOKED)) == (["revoked"], 1)
    assert await jtis(TokenSearch(subject="bob")) == (["active2"], 1)
    assert await jtis(TokenSearch(kind="session")) == (["active2"], 1)
    assert await jtis(TokenSearch(created_by="nobody")) == ([], 0)
    assert await jtis(TokenSearch(), limit=2, offset=1) == (["active2", "active1"], 4)


async def test_revoke_keeps_the_first_revocation_and_the_deny_list(db: Database) -> None:
    async with db.write() as conn:
        await tokens.add(conn, _row("live"))
        await tokens.add(conn, _row("gone", expires_at=NOW - timedelta(minutes=5)))
        assert await tokens.revoke(conn, "nope", at=NOW, by="x", reason=None) is None
        first = await tokens.revoke(conn, "live", at=NOW, by="first", reason=None)
        again = await tokens.revoke(conn, "live", at=NOW + timedelta(1), by="second", reason="x")
        await tokens.revoke(conn, "gone", at=NOW, by="first", reason=None)
    assert first is not None
    assert again is not None
    assert first[1] is True
    assert again[1] is False
    assert (again[0].revoked_by, again[0].revoked_at) == ("first", NOW)
    async with db.read() as conn:
        # an expired token needs no deny-list entry: the set is bounded by the tokens alive
        assert await tokens.revoked(conn, alive_at=NOW) == {"live": NOW}
        assert await tokens.revoked(conn, alive_at=NOW + timedelta(hours=2)) == {}


async def test_any_alive_with_scope(db: Database) -> None:
    async with db.read() as conn:
        assert not await tokens.any_alive_with_scope(conn, "admin", now=NOW)
    async with db.write() as conn:
        # "administrator" is not "admin"; an expired or revoked admin token does not count
        await tokens.add(conn, _row("t1", scopes=("read", "administrator")))
        await tokens.add(conn, _row("t2", scopes=("admin",), expires_at=NOW))
        await tokens.add(conn, _row("t3", scopes=("admin", "read")))
        await tokens.revoke(conn, "t3", at=NOW, by="x", reason=None)
    async with db.read() as conn:
        assert not await tokens.any_alive_with_scope(conn, "admin", now=NOW)
        assert await tokens.any_alive_with_scope(conn, "read", now=NOW)
    async with db.write() as conn:
        await tokens.add(conn, _row("t4", scopes=("write", "admin", "read")))
    async with db.read() as conn:
        assert await tokens.any_alive_with_scope(conn, "admin", now=NOW)

"""Password sign-ins (app.services.logins): generic refusals, lockout per user and per
address kept in the index, audited; on PostgreSQL and SQLite."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from app.auth.principal import Permission
from app.config import AuthSettings
from app.services.audit import AuditFilter
from app.services.container import Services, open_services
from app.services.logins import GENERIC_FAILURE, LoginRefused
from tests.conftest import make_settings, truncate

PASSWORD = "correct horse battery"


class Clock:
    """The sign-ins' time, moved by the tests (a lockout without sleeping through it)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest_asyncio.fixture
async def strict(database_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    """Services whose lockout comes after 3 failures of a name, 6 of an address, for 120 s,
    on a clock of the test's (``services.logins.clock``)."""
    settings = make_settings(
        database_url,
        tmp_path / "data",
        auth=AuthSettings(
            enabled=False,
            login_max_failures_per_user=3,
            login_max_failures_per_address=6,
            login_failure_window_seconds=60,
            login_lockout_seconds=120,
        ),
    )
    async with open_services(settings) as services:
        await truncate(services.db)
        services.logins.clock = Clock()
        yield services


async def _refused(services: Services, name: str, password: str, source: str) -> str:
    with pytest.raises(LoginRefused) as refused:
        await services.logins.password(name, password, source=source)
    assert str(refused.value) == GENERIC_FAILURE
    return refused.value.reason


async def test_success_and_the_reasons_of_failures(services: Services) -> None:
    await services.users.add("alice", PASSWORD, "uploader", by=None)
    await services.users.add("mallory", PASSWORD, "reader", by=None)
    await services.users.set_enabled("mallory", False, by=None)
    signed = await services.logins.password(" Alice ", PASSWORD, source="10.0.0.1")
    assert signed.subject == "alice"
    assert signed.permissions == frozenset({Permission.READ, Permission.WRITE})
    assert (await services.users.get("alice")).last_login_at is not None
    # the person is told the same thing; the audit trail says why
    assert await _refused(services, "alice", "wrong password!", "10.0.0.1") == "wrong password"
    assert await _refused(services, "nobody", PASSWORD, "10.0.0.1") == "unknown user"
    assert await _refused(services, "mallory", PASSWORD, "10.0.0.1") == "disabled user"
    assert await _refused(services, "not a name!", PASSWORD, "10.0.0.1") == "unknown user"
    await services.audit.flush()
    rows, _ = await services.audit.search(AuditFilter(action="login-failure"), limit=20, offset=0)
    latest = {r["detail"]: r for r in rows[:4]}
    assert set(latest) == {
        "password sign-in: wrong password",
        "password sign-in: unknown user",
        "password sign-in: disabled user",
    }
    assert latest["password sign-in: wrong password"]["actor"] == "alice"
    assert latest["password sign-in: unknown user"]["actor"] is None  # never the typed name
    assert all(r["source"] == "10.0.0.1" and r["outcome"] == "denied" for r in rows[:4])
    success, _ = await services.audit.search(AuditFilter(action="login"), limit=1, offset=0)
    assert success[0]["actor"] == "alice"
    assert success[0]["outcome"] == "success"


async def test_a_user_is_locked_after_failures_then_released(strict: Services) -> None:
    await strict.users.add("bob", PASSWORD, "reader", by=None)
    for n in range(3):
        assert await _refused(strict, "bob", f"wrong {n} password", f"10.0.1.{n}") == (
            "wrong password"
        )
    # the name is locked, from any address, even with the right password
    assert await _refused(strict, "bob", PASSWORD, "10.0.1.9") == "locked (user)"
    assert await _refused(strict, "BOB", PASSWORD, "10.0.1.9") == "locked (user)"
    clock = strict.logins.clock
    assert isinstance(clock, Clock)
    clock.advance(119)
    assert await _refused(strict, "bob", PASSWORD, "10.0.1.9") == "locked (user)"
    clock.advance(2)  # the lockout is over (attempts while locked did not extend it)
    assert (await strict.logins.password("bob", PASSWORD, source="10.0.1.9")).subject == "bob"
    # a success clears the name's count: three more failures are needed to lock it again
    await _refused(strict, "bob", "wrong again!!", "10.0.1.9")
    assert (await strict.logins.password("bob", PASSWORD, source="10.0.1.8")).subject == "bob"


async def test_an_address_is_locked_after_failures_on_many_names(strict: Services) -> None:
    await strict.users.add("carol", PASSWORD, "reader", by=None)
    spray = "192.0.2.7"
    for n in range(6):  # a different name each time: no name reaches its own limit
        await _refused(strict, f"user{n}-{uuid.uuid4().hex[:6]}", PASSWORD, spray)
    assert await _refused(strict, "carol", PASSWORD, spray) == "locked (address)"
    # another address is not affected
    assert (await strict.logins.password("carol", PASSWORD, source="192.0.2.8")).subject == "carol"


async def test_enabling_a_user_lifts_its_lockout(strict: Services) -> None:
    await strict.users.add("dave", PASSWORD, "reader", by=None)
    for n in range(3):
        await _refused(strict, "dave", f"wrong {n} password", "10.0.2.1")
    assert await _refused(strict, "dave", PASSWORD, "10.0.2.2") == "locked (user)"
    await strict.users.set_enabled("dave", True, by="cli:admin")
    assert (await strict.logins.password("dave", PASSWORD, source="10.0.2.2")).subject == "dave"


async def test_replicas_share_the_count(
    strict: Services, database_url: str, tmp_path: Path
) -> None:
    """Two services on one index (two replicas) lock the same name."""
    await strict.users.add("erin", PASSWORD, "reader", by=None)
    other_settings = make_settings(
        database_url,
        tmp_path / "replica",
        auth=AuthSettings(enabled=False, login_max_failures_per_user=3, login_lockout_seconds=120),
    )
    async with open_services(other_settings) as replica:
        replica.logins.clock = strict.logins.clock
        await _refused(strict, "erin", "wrong one pass", "10.0.3.1")
        await _refused(replica, "erin", "wrong two pass", "10.0.3.1")
        await _refused(strict, "erin", "wrong three pw", "10.0.3.1")
        assert await _refused(replica, "erin", PASSWORD, "10.0.3.2") == "locked (user)"

"""The directory of embedded users (app.services.users): add, passwords, roles, disable,
audited; names unique whatever their case; on PostgreSQL and SQLite."""

import pytest

from app.auth.principal import Permission
from app.auth.roles import Role
from app.errors import BadRequest, NotFound
from app.services.audit import AuditFilter
from app.services.container import Services
from app.services.users import DuplicateUser

PASSWORD = "correct horse battery"


async def test_add_list_and_roles(services: Services) -> None:
    users = services.users
    assert await users.count() == 0
    added = await users.add("Alice", PASSWORD, "uploader", by="cli:root")
    assert added.username == "alice"
    assert added.role is Role.UPLOADER
    assert added.permissions == {Permission.READ, Permission.WRITE}
    assert not added.disabled
    assert added.last_login_at is None
    await users.add("bob", PASSWORD + "!", "admin", by="cli:root")
    assert [u.username for u in await users.list()] == ["alice", "bob"]
    assert await users.count() == 2
    await users.set_role("ALICE", "editor", by="cli:root")
    assert (await users.get("alice")).role is Role.EDITOR
    assert await users.permissions_of("alice") == Role.EDITOR.permissions


async def test_names_are_unique_whatever_the_case(services: Services) -> None:
    await services.users.add("carol", PASSWORD, "reader", by=None)
    with pytest.raises(DuplicateUser, match="exists already"):
        await services.users.add("CAROL", PASSWORD, "reader", by=None)
    with pytest.raises(DuplicateUser):
        # the same name in full-width letters
        await services.users.add("\uff43\uff41\uff52\uff4f\uff4c", PASSWORD, "reader", by=None)
    assert await services.users.count() == 1


@pytest.mark.parametrize(
    ("name", "password", "role", "message"),
    [
        ("dave", "short", "reader", "at least 12"),
        ("dave", PASSWORD, "superuser", "unknown role 'superuser'"),
        ("dave smith", PASSWORD, "reader", "letters, digits"),
        ("dave", "dave", "reader", "at least 12"),
        ("davedavedave", "DaveDaveDave", "reader", "cannot be the user name"),
    ],
)
async def test_bad_values_are_refused_clearly(
    services: Services, name: str, password: str, role: str, message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        await services.users.add(name, password, role, by=None)
    assert await services.users.count() == 0


async def test_password_change_and_disable(services: Services) -> None:
    users = services.users
    await users.add("erin", PASSWORD, "reader", by=None)
    before = await users.get("erin")
    await users.set_password("erin", "a new long password", by="cli:root")
    after = await users.get("erin")
    assert after.password_changed_at >= before.password_changed_at
    signed = await services.logins.password("erin", "a new long password", source=None)
    assert signed.subject == "erin"
    await users.set_enabled("erin", False, by="cli:root")
    assert (await users.get("erin")).disabled
    assert await users.permissions_of("erin") is None  # its sessions are not renewed
    assert await users.count() == 0
    assert await users.count(enabled_only=False) == 1
    await users.set_enabled("erin", True, by="cli:root")
    assert await users.permissions_of("erin") == frozenset({Permission.READ})
    for change in (
        users.set_password("nobody", PASSWORD, by=None),
        users.set_enabled("nobody", False, by=None),
        users.set_role("nobody", "admin", by=None),
        users.get("nobody"),
    ):
        with pytest.raises(NotFound, match="no user 'nobody'"):
            await change
    assert await users.permissions_of("not a valid name!") is None


async def test_changes_are_audited(services: Services) -> None:
    users = services.users
    await users.add("frank", PASSWORD, "reader", by="cli:ops")
    await users.set_role("frank", "admin", by="cli:ops")
    await users.set_password("frank", PASSWORD + "?", by="cli:ops")
    await users.set_enabled("frank", False, by="cli:ops")
    await users.set_enabled("frank", True, by="cli:ops")
    await services.audit.flush()
    rows, _ = await services.audit.search(AuditFilter(actor="cli:ops"), limit=100, offset=0)
    mine = [r for r in rows if r["detail"].startswith("user=frank")]
    assert [r["action"] for r in reversed(mine)][-5:] == [
        "user-added",
        "user-role-changed",
        "user-password-changed",
        "user-disabled",
        "user-enabled",
    ]
    assert all(PASSWORD not in (r["detail"] or "") for r in rows)

"""``lightbox user`` (add, passwd, disable, enable, role, list) and the first start's steps to
create the first administrator, on PostgreSQL and SQLite."""

import asyncio
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.cli.users import first_admin_steps
from app.config import Settings
from app.services.container import open_services
from tests.conftest import truncate

PASSWORD = "correct horse battery"


@pytest.fixture
def runner(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CLI on the test index (its users removed), with access control as in production."""
    for name in [k for k in os.environ if k.startswith("LIGHTBOX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LIGHTBOX_DATABASE_URL", database_url)
    monkeypatch.setenv("LIGHTBOX_AUTO_MIGRATE", "false")
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # getpass.getuser()
        monkeypatch.setenv(variable, "operator")

    async def empty() -> None:
        async with open_services(Settings()) as services:
            await truncate(services.db)

    asyncio.run(empty())
    return CliRunner()


def test_user_commands(runner: CliRunner) -> None:
    added = runner.invoke(
        cli, ["user", "add", "Admin", "--role", "admin", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert added.exit_code == 0, added.output
    assert "added admin (admin:" in added.output
    # no password on the command line, no terminal: refused with the way to do it
    no_tty = runner.invoke(cli, ["user", "add", "bob"], input="")
    assert no_tty.exit_code == 2
    assert "--password-stdin" in no_tty.output
    weak = runner.invoke(cli, ["user", "add", "bob", "--password-stdin"], input="short\n")
    assert weak.exit_code == 1
    assert "error: a password has at least 12 characters" in weak.output
    twice = runner.invoke(cli, ["user", "add", "ADMIN", "--password-stdin"], input=PASSWORD + "\n")
    assert twice.exit_code == 1
    assert "exists already" in twice.output
    bob = runner.invoke(cli, ["user", "add", "bob", "--password-stdin"], input=PASSWORD + "\r\n")
    assert bob.exit_code == 0, bob.output
    assert "(reader:" in bob.output
    assert runner.invoke(cli, ["user", "role", "bob", "uploader"]).exit_code == 0
    bad_role = runner.invoke(cli, ["user", "role", "bob", "god"])
    assert bad_role.exit_code == 1
    assert "unknown role 'god'" in bad_role.output
    assert runner.invoke(cli, ["user", "disable", "bob"]).exit_code == 0
    missing = runner.invoke(cli, ["user", "disable", "carol"])
    assert missing.exit_code == 1
    assert "no user 'carol'" in missing.output
    passwd = runner.invoke(
        cli, ["user", "passwd", "admin", "--password-stdin"], input="another long password\n"
    )
    assert passwd.exit_code == 0, passwd.output

    listed = runner.invoke(cli, ["user", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    users = {u["username"]: u for u in map(json.loads, listed.output.splitlines())}
    assert set(users) == {"admin", "bob"}
    assert users["bob"]["role"] == "uploader"
    assert users["bob"]["permissions"] == ["read", "write"]
    assert users["bob"]["disabled"] is True
    assert "hash" not in listed.output
    assert "argon2" not in listed.output
    table = runner.invoke(cli, ["user", "list"])
    assert "bob" in table.output
    assert "disabled" in table.output

    async def sign_in(name: str, password: str) -> str:
        async with open_services(Settings()) as services:
            return (await services.logins.password(name, password, source=None)).subject

    # the \r\n of a Windows pipe is not part of the password; the new password is the admin's
    assert asyncio.run(sign_in("admin", "another long password")) == "admin"
    assert runner.invoke(cli, ["user", "enable", "bob"]).exit_code == 0
    assert asyncio.run(sign_in("bob", PASSWORD)) == "bob"

    exported = runner.invoke(cli, ["audit", "export"])
    actions = [json.loads(line) for line in exported.output.splitlines()]
    mine = [a for a in actions if a["actor"] == "cli:operator"]
    assert {a["action"] for a in mine} >= {
        "user-added",
        "user-role-changed",
        "user-disabled",
        "user-enabled",
        "user-password-changed",
    }


def test_first_start_steps(runner: CliRunner) -> None:
    """Said while no enabled administrator exists; then not."""
    settings = Settings()
    steps = first_admin_steps(settings, "http://127.0.0.1:8080")
    assert steps is not None
    assert "lightbox user add admin --role admin" in steps
    assert "http://127.0.0.1:8080/" in steps
    assert "no default" in steps
    prepared = runner.invoke(
        cli, ["db", "prepare", "--no-migrate", "--first-start", "http://127.0.0.1:8080"]
    )
    assert prepared.exit_code == 0
    assert "lightbox user add admin --role admin" in prepared.output
    runner.invoke(cli, ["user", "add", "rita", "--password-stdin"], input=PASSWORD + "\n")
    assert first_admin_steps(settings, "http://x") is not None  # a reader is no administrator
    runner.invoke(
        cli, ["user", "add", "root", "--role", "admin", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert first_admin_steps(settings, "http://x") is None
    quiet = runner.invoke(cli, ["db", "prepare", "--no-migrate", "--first-start", "http://x"])
    assert quiet.output == ""

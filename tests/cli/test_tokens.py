"""``lightbox token create|list|revoke`` with ``--data-dir`` (serve's meaning), on PostgreSQL
and SQLite; bad input is a clear message and a non-zero exit status, never a traceback."""

import json
from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from app.cli import cli


@pytest.fixture
def runner(fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner whose environment names only the index (the data directory comes from
    --data-dir), run from a directory that is not the data directory's parent."""
    import os

    for name in [k for k in os.environ if k.startswith("LIGHTBOX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LIGHTBOX_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("LIGHTBOX_AUTO_MIGRATE", "true")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return CliRunner()


def test_create_list_revoke(runner: CliRunner, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    made = runner.invoke(
        cli,
        ["token", "create", "--data-dir", data, "--subject", "dr", "--scope", "read,admin"],
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert f"token id (jti) {jti}" in made.stderr
    # the key went to --data-dir, not to ./lightbox-data of the working directory
    assert (tmp_path / "data" / "auth" / "signing-key.pem").is_file()
    assert not Path("lightbox-data").exists()
    share = runner.invoke(
        cli,
        ["token", "create", "--data-dir", data, "--subject", "guest", "--study", "1.2.3"],
    )
    assert share.exit_code == 0, share.output

    listed = runner.invoke(cli, ["token", "list", "--data-dir", data, "--json"])
    assert listed.exit_code == 0, listed.output
    items = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(i["subject"], i["kind"], i["state"]) for i in items] == [
        ("guest", "cli", "active"),
        ("dr", "cli", "active"),
    ]
    assert items[0]["studies"] == ["1.2.3"]
    assert items[1]["created_by"].startswith("cli:")
    assert token not in listed.stdout

    revoked = runner.invoke(
        cli, ["token", "revoke", jti, "--data-dir", data, "--reason", "left the team"]
    )
    assert revoked.exit_code == 0, revoked.output
    assert f"revoked {jti} (cli token of dr)" in revoked.stdout
    active = runner.invoke(cli, ["token", "list", "--data-dir", data])
    assert jti not in active.stdout
    assert "guest" in active.stdout
    every = runner.invoke(cli, ["token", "list", "--data-dir", data, "--all"])
    assert f"{jti}  revoked" in every.stdout
    only_dr = runner.invoke(cli, ["token", "list", "--data-dir", data, "--all", "--subject", "x"])
    assert "no tokens" in only_dr.stdout

    # the issuance and the revocation are in the audit trail
    exported = runner.invoke(cli, ["audit", "export"], env={"LIGHTBOX_DATA_DIR": data})
    assert exported.exit_code == 0, exported.output
    assert '"action": "token-issued"' in exported.stdout
    assert '"action": "token-revoked"' in exported.stdout
    assert "reason=left the team" in exported.stdout


def test_bad_input(runner: CliRunner, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    unknown = runner.invoke(cli, ["token", "revoke", "feedface", "--data-dir", data])
    assert unknown.exit_code == 1
    assert "error: no token 'feedface' was issued here" in unknown.stderr
    kind = runner.invoke(cli, ["token", "list", "--data-dir", data, "--kind", "robot"])
    assert kind.exit_code == 2
    assert "unknown kind 'robot'" in kind.output
    uid = runner.invoke(
        cli, ["token", "create", "--data-dir", data, "--subject", "x", "--study", "1.2.x"]
    )
    assert uid.exit_code == 1
    assert "error: not a StudyInstanceUID: '1.2.x'" in uid.stderr
    blank = runner.invoke(cli, ["token", "create", "--data-dir", data, "--subject", " "])
    assert blank.exit_code == 1
    assert "error: the subject must not be empty" in blank.stderr
    assert runner.invoke(cli, ["token", "list", "--data-dir", data]).stdout.startswith(
        "no active tokens"
    )


def test_an_index_that_cannot_be_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [k for k in os.environ if k.startswith("LIGHTBOX_")]:
        monkeypatch.delenv(name)
    # a PostgreSQL database that does not exist: no token is printed, the reason is
    monkeypatch.setenv(
        "LIGHTBOX_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/no_such_db_x"
    )
    done = CliRunner().invoke(
        cli, ["token", "create", "--data-dir", str(tmp_path / "d"), "--subject", "x"]
    )
    assert done.exit_code == 1
    assert done.stdout == ""
    assert "error: the token could not be recorded in the index" in done.stderr
    assert 'database "no_such_db_x" does not exist' in done.stderr
    assert "lightbox db upgrade" in done.stderr

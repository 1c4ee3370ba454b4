"""``lightbox ae add|list|remove``: the registry from a shell, audited."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.services.audit import AuditFilter
from app.services.container import Services, open_services


def on_services(call: Callable[[Services], Awaitable[Any]]) -> Any:
    """``call`` on services of the same settings as the commands (another process, in effect)."""

    async def run() -> Any:
        async with open_services(Settings()) as services:
            return await call(services)

    return asyncio.run(run())


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTBOX_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("LIGHTBOX_STORAGE_URL", settings.resolved_storage_url())
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LIGHTBOX_AUTO_MIGRATE", "false")
    monkeypatch.setenv("USER", "operator")
    monkeypatch.setenv("LOGNAME", "operator")  # getpass reads it first
    monkeypatch.setenv(
        "LIGHTBOX_DIMSE__REMOTE_AES", '[{"ae_title": "STATIC", "host": "10.0.0.9", "port": 104}]'
    )


@pytest.mark.usefixtures("env", "services")
def test_add_list_remove() -> None:
    runner = CliRunner()
    added = runner.invoke(
        cli, ["ae", "add", "LEGACY", "pacs.example.org", "4242", "--description", "old PACS"]
    )
    assert added.exit_code == 0, added.output
    assert added.output.strip() == "added LEGACY at pacs.example.org:4242"
    assert on_services(lambda s: s.aes.require("LEGACY")).description == "old PACS"

    listed = runner.invoke(cli, ["ae", "list"])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert lines[0].split()[:3] == ["LEGACY", "pacs.example.org:4242", "index"]
    assert lines[1].split()[:3] == ["STATIC", "10.0.0.9:104", "settings"]
    as_json = json.loads(runner.invoke(cli, ["ae", "list", "--json"]).output)
    assert [e["ae_title"] for e in as_json] == ["LEGACY", "STATIC"]

    twice = runner.invoke(cli, ["ae", "add", "LEGACY", "10.0.0.1", "104"])
    assert twice.exit_code == 1
    assert "error: the remote AE 'LEGACY' is registered already" in twice.output
    bad = runner.invoke(cli, ["ae", "add", "TOO-LONG-A-TITLE-X", "10.0.0.1", "104"])
    assert bad.exit_code == 1
    assert "at most 16 characters" in bad.output
    static = runner.invoke(cli, ["ae", "remove", "STATIC"])
    assert static.exit_code == 1
    assert "defined in the settings" in static.output

    removed = runner.invoke(cli, ["ae", "remove", "LEGACY"])
    assert removed.exit_code == 0
    assert removed.output.strip() == "removed LEGACY (pacs.example.org:4242)"
    assert on_services(lambda s: s.aes.get("LEGACY")) is None
    again = runner.invoke(cli, ["ae", "remove", "LEGACY"])
    assert (again.exit_code, "no remote AE 'LEGACY' is registered" in again.output) == (1, True)

    items, _ = on_services(
        lambda s: s.audit.search(AuditFilter(actor="cli:operator"), limit=50, offset=0)
    )
    assert [(i["action"], i["outcome"]) for i in reversed(items)] == [
        ("ae-add", "success"),
        ("ae-add", "failure"),
        ("ae-add", "failure"),
        ("ae-remove", "failure"),
        ("ae-remove", "success"),
        ("ae-remove", "failure"),
    ]
    assert items[1]["detail"] == "ae-remove LEGACY"

"""Retention (issue 23 point 6): rules by age, modality and study description; dry runs; the
threshold that refuses to delete everything, or too much, unless confirmed; deletes through
the delete path (tombstones, audit rows); ``lightbox retention``. PostgreSQL and SQLite."""

import json
import secrets
from datetime import date
from typing import Any

import anyio.to_thread
import httpx
import pytest
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.dicom.target import Target
from app.services.audit import AuditFilter
from app.services.container import Services
from app.services.delete import tombstoned
from app.services.retention import RetentionRule, RetentionService
from tests.factories import make_instance, multipart, stow_headers

TODAY = date(2026, 12, 1)
#: name -> (StudyDate, Modality, StudyDescription, instances)
STUDIES: dict[str, tuple[str | None, str, str, int]] = {
    "old_ct": ("20100101", "CT", "CT Head", 2),
    "old_sr": ("20100102", "SR", "Report", 1),
    "recent": ("20261120", "CT", "CT Head", 1),
    "undated": (None, "MR", "MR Knee", 1),  # received today: young
    "mid_mr": ("20150601", "MR", "MR Knee", 1),
}


async def _archive(client: httpx.AsyncClient) -> dict[str, str]:
    """The studies of :data:`STUDIES`; their StudyInstanceUIDs by name."""
    uids = {name: str(generate_uid()) for name in STUDIES}
    raws = [
        make_instance(
            StudyInstanceUID=uids[name],
            SeriesInstanceUID=series,
            StudyDate=day,
            Modality=modality,
            StudyDescription=description,
            PatientID=f"PID-{name}",
        )
        for name, (day, modality, description, count) in STUDIES.items()
        for series in [str(generate_uid())]
        for _ in range(count)
    ]
    response = await client.post(
        "/dicom-web/studies", content=multipart(raws), headers=stow_headers()
    )
    assert response.status_code == 200, response.text
    return uids


async def _remaining(client: httpx.AsyncClient, uids: dict[str, str]) -> set[str]:
    response = await client.get("/dicom-web/studies")
    found = (
        {item["0020000D"]["Value"][0] for item in response.json()} if response.content else set()
    )
    return {name for name, uid in uids.items() if uid in found}


async def _audit(services: Services, actor: str) -> list[dict[str, Any]]:
    await services.audit.flush()
    items, _ = await services.audit.search(AuditFilter(actor=actor), limit=100, offset=0)
    return sorted(items, key=lambda item: item["seq"])


def _actor() -> str:
    return f"test:{secrets.token_hex(4)}"


async def test_rules_select_by_age_modality_and_description(
    client: httpx.AsyncClient, services: Services
) -> None:
    await _archive(client)
    plan = await services.retention.plan(
        [
            RetentionRule(3650),  # 10 years: 2010 and 2015
            RetentionRule(365, modality="SR"),
            RetentionRule(365, study_description="ct*"),  # any case
            RetentionRule(1, study_description="*Knee"),  # undated: received today, young
        ],
        today=TODAY,
    )
    assert plan.total_studies == 5
    assert plan.per_rule == (3, 1, 1, 1)
    assert plan.selected.studies == 3  # old_ct, old_sr, mid_mr
    assert plan.selected.instances == 4
    assert plan.selected.bytes > 0


async def test_dry_run_then_real_run_through_the_delete_path(
    client: httpx.AsyncClient, services: Services
) -> None:
    uids = await _archive(client)
    rules = [RetentionRule(365, modality="SR"), RetentionRule(365, study_description="CT*")]
    actor = _actor()
    dry = await services.retention.run(rules, actor=actor, dry_run=True, today=TODAY)
    assert (dry.refused, dry.deleted_studies, dry.plan.selected.studies) == (None, 0, 2)
    assert await _remaining(client, uids) == set(STUDIES)

    done = await services.retention.run(rules, actor=actor, today=TODAY)
    assert (done.refused, done.deleted_studies, done.deleted_instances, done.failed) == (
        None,
        2,
        3,
        [],
    )
    assert await _remaining(client, uids) == {"recent", "undated", "mid_mr"}
    # deleted as a DELETE would: 410 Gone while the tombstone lives, blobs removed
    assert await tombstoned(services.db, Target(uids["old_ct"]))
    assert (await services.maintenance.fsck()).ok

    rows = await _audit(services, actor)
    summary = [(r["action"], r["outcome"], r["count"]) for r in rows]
    assert summary[0] == ("retention", "success", 0)
    assert rows[0]["detail"].startswith("dry run, would delete 2 of 5 studies")
    assert sorted(summary[1:3]) == [("delete", "success", 1), ("delete", "success", 2)]
    deleted = {r["study_uid"]: r for r in rows[1:3]}
    assert deleted.keys() == {uids["old_ct"], uids["old_sr"]}
    assert deleted[uids["old_sr"]]["patient_id"] == "PID-old_sr"
    assert deleted[uids["old_sr"]]["detail"].startswith("retention: older than 365 days")
    assert summary[3] == ("retention", "success", 2)
    assert (await services.audit.verify()).ok


async def test_too_much_or_everything_is_refused_unless_confirmed(
    client: httpx.AsyncClient, services: Services
) -> None:
    uids = await _archive(client)
    actor = _actor()
    too_much = await services.retention.run([RetentionRule(3650)], actor=actor, today=TODAY)
    assert too_much.refused is not None
    assert "3 of 5 studies" in too_much.refused
    assert too_much.deleted_studies == 0
    assert await _remaining(client, uids) == set(STUDIES)

    # even a threshold of 100% refuses to empty the archive
    lenient = RetentionService(services.db, services.delete, services.audit, max_fraction=1.0)
    everything = await lenient.run(
        [RetentionRule(1)], actor=actor, today=date(2100, 1, 1), dry_run=True
    )
    assert everything.refused == "the rules select every study of the archive (5)"

    confirmed = await services.retention.run(
        [RetentionRule(3650)], actor=actor, today=TODAY, confirmed=True
    )
    assert (confirmed.refused, confirmed.deleted_studies) == (None, 3)
    assert await _remaining(client, uids) == {"recent", "undated"}
    rows = await _audit(services, actor)
    refusals = [r for r in rows if r["action"] == "retention" and r["outcome"] == "failure"]
    assert len(refusals) == 2
    assert refusals[0]["detail"].startswith("refused: the rules select 3 of 5 studies")


async def test_no_rule_is_an_error(services: Services) -> None:
    with pytest.raises(ValueError, match="no retention rule"):
        await services.retention.run([], actor="x")


def _env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTBOX_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("LIGHTBOX_STORAGE_URL", settings.resolved_storage_url())
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LIGHTBOX_AUTO_MIGRATE", "false")


async def test_cli_retention(
    client: httpx.AsyncClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uids = await _archive(client)
    _env(settings, monkeypatch)
    runner = CliRunner()  # in a thread: the command runs its own event loop

    async def run(*args: str) -> Any:
        return await anyio.to_thread.run_sync(runner.invoke, cli, ["retention", *args])

    dry = await run("--older-than-days", "3650", "--dry-run", "--json")
    # three of five, over the default threshold: refused even as a dry run, exit status 1
    assert dry.exit_code == 1, dry.output
    outcome = json.loads(dry.output)
    assert outcome["selected"]["studies"] == 3
    assert "3 of 5" in outcome["refused"]
    assert await _remaining(client, uids) == set(STUDIES)

    narrow = await run("--older-than-days", "3650", "--modality", "sr")
    assert narrow.exit_code == 0, narrow.output
    assert "deleted 1 studies (1 instances); 0 failed" in narrow.output
    assert await _remaining(client, uids) == set(STUDIES) - {"old_sr"}

    forced = await run("--older-than-days", "3650", "--yes")
    assert forced.exit_code == 0, forced.output
    assert await _remaining(client, uids) == {"recent", "undated"}

    for bad in (["--modality", "CT"], ["--older-than-days", "0"], []):
        refused = await run(*bad)
        assert refused.exit_code == 2, refused.output
    monkeypatch.setenv(
        "LIGHTBOX_RETENTION__RULES", '[{"older_than_days": 1, "study_description": "MR*"}]'
    )
    from_settings = await run("--dry-run")
    assert from_settings.exit_code == 0, from_settings.output
    assert "rule older than 1 days, study description 'MR*': 0 studies" in from_settings.output


def test_rules_in_settings_are_checked() -> None:
    from pydantic import ValidationError

    from app.config import RetentionSettings

    rules = RetentionSettings.model_validate(
        {"rules": [{"older_than_days": 30, "modality": " ct "}], "interval_hours": 24}
    ).rules
    assert (rules[0].older_than_days, rules[0].modality) == (30, "CT")
    for bad in (
        {"older_than_days": 0},
        {"older_than_days": 30, "modality": ""},
        {"older_than_days": 30, "study_description": "  "},
        {"modality": "CT"},
    ):
        with pytest.raises(ValidationError):
            RetentionSettings.model_validate({"rules": [bad]})
    with pytest.raises(ValidationError):
        RetentionSettings.model_validate({"max_fraction": 0})

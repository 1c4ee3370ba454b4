"""Usage figures (issue 23 point 6): ``services.stats``, ``GET /api/stats`` and ``lightbox
stats``, on PostgreSQL and SQLite."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select, update
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.index.models import Instance, Study
from app.services.container import Services
from tests.auth.helpers import auth_client, auth_settings
from tests.factories import make_instance, multipart, stow_headers

OLD = datetime(2020, 1, 15, 12, 0, tzinfo=UTC)


async def _archive(http: httpx.AsyncClient, services: Services, **headers: str) -> dict[str, Any]:
    """Study A: a CT series of 3 and an MR series of 2; study B: one CT instance, received in
    January 2020. The sizes of what was stored by name, and the two StudyInstanceUIDs."""
    a, b = str(generate_uid()), str(generate_uid())
    ct, mr, b_ct = (str(generate_uid()) for _ in range(3))
    raws = {
        "a_ct": [make_instance(StudyInstanceUID=a, SeriesInstanceUID=ct) for _ in range(3)],
        "a_mr": [
            make_instance(StudyInstanceUID=a, SeriesInstanceUID=mr, Modality="MR", rows=16)
            for _ in range(2)
        ],
        "b_ct": [make_instance(StudyInstanceUID=b, SeriesInstanceUID=b_ct, PatientID="PID-2")],
    }
    everything = [raw for group in raws.values() for raw in group]
    response = await http.post(
        "/dicom-web/studies", content=multipart(everything), headers={**stow_headers(), **headers}
    )
    assert response.status_code == 200, response.text
    async with services.db.write() as conn:
        await conn.execute(
            update(Instance)
            .where(Instance.study_id.in_(select(Study.id).where(Study.study_uid == b)))
            .values(created_at=OLD)
        )
    sizes = {name: sum(len(r) for r in group) for name, group in raws.items()}
    sizes["study_a"], sizes["study_b"] = sizes["a_ct"] + sizes["a_mr"], sizes["b_ct"]
    return {**sizes, "a": a, "b": b}


def _check(report: dict[str, Any], sizes: dict[str, Any]) -> None:
    total = sizes["study_a"] + sizes["study_b"]
    assert report["totals"] == {"studies": 2, "series": 3, "instances": 6, "bytes": total}
    assert report["by_modality"] == [
        {
            "modality": "CT",
            "studies": 2,
            "series": 2,
            "instances": 4,
            "bytes": sizes["a_ct"] + sizes["b_ct"],
        },
        {"modality": "MR", "studies": 1, "series": 1, "instances": 2, "bytes": sizes["a_mr"]},
    ]  # the largest first
    this_month = datetime.now(UTC).strftime("%Y-%m")
    assert report["by_month"] == [
        {
            "month": "2020-01",
            "studies": 1,
            "series": 1,
            "instances": 1,
            "bytes": sizes["b_ct"],
            "cumulative_bytes": sizes["b_ct"],
        },
        {
            "month": this_month,
            "studies": 1,
            "series": 2,
            "instances": 5,
            "bytes": sizes["study_a"],
            "cumulative_bytes": total,
        },
    ]
    assert report["by_tier"] == {"filesystem": {"instances": 6, "bytes": total}}
    recent = {"instances": 5, "bytes": sizes["study_a"]}
    assert report["growth"] == {"last_30_days": recent, "last_365_days": recent}
    largest = report["largest_studies"]
    assert [(s["study_uid"], s["instances"], s["bytes"]) for s in largest] == [
        (sizes["a"], 5, sizes["study_a"]),
        (sizes["b"], 1, sizes["study_b"]),
    ]
    assert largest[0]["modalities"] == ["CT", "MR"]
    assert largest[0]["series"] == 2
    assert largest[0]["study_date"] == "2024-01-31"
    assert "Doe" not in json.dumps(report)  # no patient data


async def test_stats_of_an_empty_archive(services: Services) -> None:
    report = (await services.stats.report()).to_json()
    assert report["totals"] == {"studies": 0, "series": 0, "instances": 0, "bytes": 0}
    assert report["by_modality"] == report["by_month"] == report["largest_studies"] == []
    assert report["growth"]["last_30_days"] == {"instances": 0, "bytes": 0}


async def test_stats_figures(client: httpx.AsyncClient, services: Services) -> None:
    sizes = await _archive(client, services)
    _check((await services.stats.report()).to_json(), sizes)
    top = (await services.stats.report(largest=1)).to_json()["largest_studies"]
    assert [s["study_uid"] for s in top] == [sizes["a"]]


async def test_api_stats_is_for_admins(database_url: str, tmp_path: Path) -> None:
    async with auth_client(auth_settings(database_url, tmp_path / "data")) as (
        services,
        http,
        tokens,
    ):
        sizes = await _archive(http, services, **tokens.headers(["write"]))
        assert (await http.get("/api/stats")).status_code == 401
        refused = await http.get("/api/stats", headers=tokens.headers(["read", "write"]))
        assert refused.status_code == 403
        answer = await http.get("/api/stats", headers=tokens.headers(["admin"]))
        assert answer.status_code == 200
        _check(answer.json(), sizes)
        bad = await http.get(
            "/api/stats", params={"largest": "-1"}, headers=tokens.headers(["admin"])
        )
        assert bad.status_code == 400


async def test_cli_stats(
    client: httpx.AsyncClient,
    services: Services,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes = await _archive(client, services)
    monkeypatch.setenv("LIGHTBOX_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("LIGHTBOX_STORAGE_URL", settings.resolved_storage_url())
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LIGHTBOX_AUTO_MIGRATE", "false")
    runner = CliRunner()  # in a thread: the command runs its own event loop
    as_json = await anyio.to_thread.run_sync(runner.invoke, cli, ["stats", "--json"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    report["generated"] = None
    _check(report, sizes)
    text = await anyio.to_thread.run_sync(runner.invoke, cli, ["stats", "--largest", "1"])
    assert text.exit_code == 0, text.output
    assert text.output.startswith("2 studies, 3 series, 6 instances, ")
    assert "by modality:" in text.output
    assert "2020-01" in text.output
    assert sizes["a"] in text.output
    assert sizes["b"] not in text.output

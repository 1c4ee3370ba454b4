"""DELETE of studies, series and instances over the ASGI app, PostgreSQL and SQLite (DEL-01..04)."""

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from app.config import Settings
from app.services.container import Services
from tests.conftest import app_client, make_settings
from tests.consistency import count_drift
from tests.factories import make_instance, multipart, stow_headers

ROOT = "/dicom-web"


@dataclass
class Study:
    uid: str
    series: list[str]  # series[0]: CT with 3 instances, series[1]: MR with 2
    sops: list[list[str]]
    raws: dict[str, bytes]


async def _store(client: httpx.AsyncClient, raws: list[bytes]) -> None:
    response = await client.post(f"{ROOT}/studies", content=multipart(raws), headers=stow_headers())
    assert response.status_code == 200, response.text


async def _make_study(client: httpx.AsyncClient) -> Study:
    study = Study(str(generate_uid()), [str(generate_uid()), str(generate_uid())], [[], []], {})
    for index, (modality, count) in enumerate((("CT", 3), ("MR", 2))):
        for number in range(1, count + 1):
            sop = str(generate_uid())
            study.sops[index].append(sop)
            study.raws[sop] = make_instance(
                StudyInstanceUID=study.uid,
                SeriesInstanceUID=study.series[index],
                SOPInstanceUID=sop,
                Modality=modality,
                SeriesNumber=index + 1,
                InstanceNumber=number,
            )
    await _store(client, list(study.raws.values()))
    return study


async def _qido_study(client: httpx.AsyncClient, study_uid: str) -> dict[str, Any] | None:
    response = await client.get(f"{ROOT}/studies", params={"StudyInstanceUID": study_uid})
    if response.status_code == 204:
        return None
    assert response.status_code == 200
    (item,) = response.json()
    return item  # type: ignore[no-any-return]


def _blobs(settings: Settings) -> int:
    return sum(1 for _ in (settings.data_dir / "blobs" / "dicom").rglob("*.dcm"))


def _series_url(study: Study, index: int) -> str:
    return f"{ROOT}/studies/{study.uid}/series/{study.series[index]}"


def _instance_url(study: Study, index: int, sop: str) -> str:
    return f"{_series_url(study, index)}/instances/{sop}"


async def test_delete_instance_updates_counts_and_tombstones(
    client: httpx.AsyncClient, services: Services, settings: Settings
) -> None:
    study = await _make_study(client)
    other = await _make_study(client)
    sop = study.sops[0][1]
    assert _blobs(settings) == 10

    response = await client.delete(_instance_url(study, 0, sop))
    assert response.status_code == 204
    assert response.content == b""

    found = await _qido_study(client, study.uid)
    assert found is not None
    assert found["00201206"]["Value"] == [2]
    assert found["00201208"]["Value"] == [4]
    assert sorted(found["00080061"]["Value"]) == ["CT", "MR"]
    assert await count_drift(services.db) == []
    assert _blobs(settings) == 9
    assert (await services.maintenance.fsck()).ok

    # DEL-04: the instance is gone, not unknown; its siblings and the other study are untouched
    for suffix in ("", "/metadata", "/frames/1"):
        gone = await client.get(_instance_url(study, 0, sop) + suffix)
        assert gone.status_code == 410, suffix
        assert gone.headers["content-type"] == "application/problem+json"
    assert (await client.get(_instance_url(study, 0, study.sops[0][0]))).status_code == 200
    assert (await client.get(f"{ROOT}/studies/{other.uid}/metadata")).status_code == 200
    metadata = (await client.get(f"{ROOT}/studies/{study.uid}/metadata")).json()
    assert len(metadata) == 4
    # already deleted: 404 (DEL-02)
    assert (await client.delete(_instance_url(study, 0, sop))).status_code == 404


async def test_delete_series_drops_its_modality_and_answers_410(
    client: httpx.AsyncClient, services: Services, settings: Settings
) -> None:
    study = await _make_study(client)
    response = await client.delete(_series_url(study, 1))
    assert response.status_code == 204
    found = await _qido_study(client, study.uid)
    assert found is not None
    assert found["00201206"]["Value"] == [1]
    assert found["00201208"]["Value"] == [3]
    assert found["00080061"]["Value"] == ["CT"]
    assert await count_drift(services.db) == []
    assert _blobs(settings) == 3
    for url in (
        _series_url(study, 1),
        _series_url(study, 1) + "/metadata",
        _instance_url(study, 1, study.sops[1][0]),
        _instance_url(study, 1, study.sops[1][0]) + "/metadata",
    ):
        assert (await client.get(url)).status_code == 410, url
    assert (await client.get(_series_url(study, 0))).status_code == 200
    assert (await client.delete(_series_url(study, 1))).status_code == 404


async def test_delete_study_then_restow(
    client: httpx.AsyncClient, services: Services, settings: Settings
) -> None:
    study = await _make_study(client)
    assert (await client.delete(f"{ROOT}/studies/{study.uid}")).status_code == 204
    assert await _qido_study(client, study.uid) is None
    assert _blobs(settings) == 0
    assert (await services.maintenance.fsck()).ok
    for url in (
        f"{ROOT}/studies/{study.uid}",
        f"{ROOT}/studies/{study.uid}/metadata",
        _series_url(study, 0),
        _instance_url(study, 1, study.sops[1][1]),
    ):
        assert (await client.get(url)).status_code == 410, url
    assert (await client.delete(f"{ROOT}/studies/{study.uid}")).status_code == 404

    # storing an instance again brings it back (its tombstone is cleared), siblings stay gone
    sop = study.sops[0][0]
    await _store(client, [study.raws[sop]])
    again = await client.get(_instance_url(study, 0, sop))
    assert again.status_code == 200
    assert (await client.get(f"{ROOT}/studies/{study.uid}")).status_code == 200
    assert (await client.get(_instance_url(study, 0, study.sops[0][1]))).status_code == 410
    found = await _qido_study(client, study.uid)
    assert found is not None
    assert (found["00201206"]["Value"], found["00201208"]["Value"]) == ([1], [1])
    assert await count_drift(services.db) == []


async def test_deleting_the_last_instance_removes_series_and_study(
    client: httpx.AsyncClient, services: Services
) -> None:
    study = await _make_study(client)
    for index, sops in enumerate(study.sops):
        for sop in sops:
            assert (await client.delete(_instance_url(study, index, sop))).status_code == 204
            assert await count_drift(services.db) == []
    assert await _qido_study(client, study.uid) is None
    assert (await client.get(f"{ROOT}/studies/{study.uid}")).status_code == 410
    assert (await client.get(_series_url(study, 1))).status_code == 410


async def test_delete_errors(client: httpx.AsyncClient) -> None:
    study = await _make_study(client)
    unknown = str(generate_uid())
    assert (await client.delete(f"{ROOT}/studies/{unknown}")).status_code == 404
    assert (await client.delete(f"{ROOT}/studies/{study.uid}/series/{unknown}")).status_code == 404
    # an existing series under the wrong study is not found (and not deleted)
    wrong = await client.delete(f"{ROOT}/studies/{unknown}/series/{study.series[0]}")
    assert wrong.status_code == 404
    wrong = await client.delete(
        f"{ROOT}/studies/{study.uid}/series/{study.series[1]}/instances/{study.sops[0][0]}"
    )
    assert wrong.status_code == 404
    for bad in ("1.2.x", "01.2", "1..2", "9" * 65):
        response = await client.delete(f"{ROOT}/studies/{bad}")
        assert response.status_code == 400, bad
        assert response.headers["content-type"] == "application/problem+json"
    bad_series = await client.delete(f"{ROOT}/studies/{study.uid}/series/1.02")
    assert bad_series.status_code == 400
    assert (await client.get(f"{ROOT}/studies/{unknown}")).status_code == 404
    assert (await client.get(f"{ROOT}/studies/{study.uid}/metadata")).status_code == 200


@pytest.mark.parametrize("study_level", [True, False])
async def test_deletion_disabled_answers_405(
    database_url: str, tmp_path: Path, study_level: bool
) -> None:
    settings = make_settings(database_url, tmp_path / "data", allow_delete=False)
    async with app_client(settings) as (_services, client):
        study = await _make_study(client)
        url = f"{ROOT}/studies/{study.uid}" if study_level else _series_url(study, 0)
        response = await client.delete(url)
        assert response.status_code == 405
        allow = [m.strip() for m in response.headers["allow"].split(",")]
        assert "DELETE" not in allow
        assert "GET" in allow
        assert (await client.get(url)).status_code == 200


async def test_tombstones_can_be_off_and_expire(database_url: str, tmp_path: Path) -> None:
    off = make_settings(database_url, tmp_path / "off", tombstone_hours=0)
    async with app_client(off) as (_services, client):
        study = await _make_study(client)
        assert (await client.delete(f"{ROOT}/studies/{study.uid}")).status_code == 204
        assert (await client.get(f"{ROOT}/studies/{study.uid}")).status_code == 404
    # Long enough that the 410 is seen even when CI is slow (a DELETE took ~1 s there, which
    # outlived the 0.2 s this test once used), short enough to wait out.
    ttl = 5.0
    brief = make_settings(database_url, tmp_path / "brief", tombstone_hours=ttl / 3600)
    async with app_client(brief) as (_services, client):
        study = await _make_study(client)
        deleted_at = time.monotonic()
        assert (await client.delete(_series_url(study, 0))).status_code == 204
        assert (await client.get(_series_url(study, 0))).status_code == 410
        while (status := (await client.get(_series_url(study, 0))).status_code) == 410:
            assert time.monotonic() - deleted_at < ttl + 10, "the tombstone never expired"
            await asyncio.sleep(0.25)
        assert status == 404
        assert time.monotonic() - deleted_at >= ttl

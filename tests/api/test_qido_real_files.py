"""QIDO-RS over real files (pydicom's test files): each level answers with the files' own values.

Files are stored through STOW-RS, then found at every level by their real keys, and the
returned attributes are compared with what pydicom reads from the same files.
"""

from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from tests.corpus import corpus_path
from tests.factories import multipart, stow_headers

ROOT = "/dicom-web"
FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "emri_small.dcm", "SC_rgb.dcm"]


def _value(item: dict[str, Any], tag: str) -> Any:
    return item[tag].get("Value", [None])[0]


@pytest.fixture
async def stored(client: httpx.AsyncClient) -> list[pydicom.Dataset]:
    paths: list[Path] = [corpus_path(name) for name in FILES]
    body = multipart([p.read_bytes() for p in paths])
    response = await client.post(f"{ROOT}/studies", content=body, headers=stow_headers())
    assert response.status_code == 200, response.text
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]


async def test_every_level_finds_each_file(
    client: httpx.AsyncClient, stored: list[pydicom.Dataset]
) -> None:
    for ds in stored:
        study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        [st] = (await client.get(f"{ROOT}/studies?StudyInstanceUID={study}")).json()
        assert _value(st, "00100020") == (ds.PatientID or None)
        assert _value(st, "00080020") == ds.StudyDate
        assert _value(st, "00080061") == ds.Modality
        assert _value(st, "00201208") == 1
        by_date = (await client.get(f"{ROOT}/studies?StudyDate={ds.StudyDate}")).json()
        assert study in [_value(i, "0020000D") for i in by_date]
        by_time = (
            await client.get(f"{ROOT}/studies?StudyDate={ds.StudyDate}&StudyTime={ds.StudyTime}")
        ).json()
        assert study in [_value(i, "0020000D") for i in by_time]

        [se] = (await client.get(f"{ROOT}/studies/{study}/series")).json()
        assert _value(se, "0020000E") == series
        assert _value(se, "00080060") == ds.Modality
        assert _value(se, "00200011") == int(ds.SeriesNumber)
        [se2] = (
            await client.get(f"{ROOT}/series?SeriesInstanceUID={series}&Modality={ds.Modality}")
        ).json()
        assert _value(se2, "0020000D") == study

        [inst] = (await client.get(f"{ROOT}/studies/{study}/series/{series}/instances")).json()
        assert _value(inst, "00080018") == sop
        assert _value(inst, "00080016") == ds.SOPClassUID
        assert _value(inst, "00280010") == ds.Rows
        assert _value(inst, "00280011") == ds.Columns
        if "InstanceNumber" in ds:
            assert _value(inst, "00200013") == int(ds.InstanceNumber)
        [inst2] = (await client.get(f"{ROOT}/instances?SOPInstanceUID={sop}")).json()
        assert _value(inst2, "00100020") == (ds.PatientID or None)
        assert _value(inst2, "00080060") == ds.Modality
        [inst3] = (await client.get(f"{ROOT}/studies/{study}/instances")).json()
        assert inst3["00081190"] == inst["00081190"]


async def test_real_names_match(client: httpx.AsyncClient, stored: list[pydicom.Dataset]) -> None:
    named = [ds for ds in stored if str(ds.PatientName)]
    for ds in named:
        name = str(ds.PatientName)
        found = (await client.get(f"{ROOT}/studies", params={"PatientName": name})).json()
        assert [_value(i, "0020000D") for i in found] == [ds.StudyInstanceUID]
        lower = (await client.get(f"{ROOT}/studies", params={"PatientName": name.lower()})).json()
        assert len(lower) == 1
    samples = (await client.get(f"{ROOT}/studies?PatientName=compressedsamples*")).json()
    assert len(samples) == 3
    fuzzy = (await client.get(f"{ROOT}/studies?PatientName=ct1%20compr&fuzzymatching=true")).json()
    assert [_value(i, "00100010")["Alphabetic"] for i in fuzzy] == ["CompressedSamples^CT1"]

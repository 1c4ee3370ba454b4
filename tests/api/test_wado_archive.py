"""WADO-RS ``Accept: application/zip``: a study or series as a ZIP archive holding a PS3.10
file-set (PS3.18 §8.6.1.3, Table 10.4.4-1), on both index databases.

The archive opens with :mod:`zipfile`; its DICOMDIR reads with pydicom's ``FileSet`` and DCMTK's
``dcmftest``/``dcmdump`` and references every instance; every file is byte-identical to what
WADO-RS sends for that instance as stored.
"""

import io
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import BasicTextSRStorage, generate_uid

from app.config import Settings
from tests.auth.helpers import auth_client, auth_settings
from tests.factories import (
    IMAGE_KEYWORDS,
    make_dataset,
    make_instance,
    make_pdf_dataset,
    multipart,
    stow_headers,
    to_bytes,
)
from tests.media import read_fileset

ROOT = "/dicom-web"
ZIP = "application/zip"


def _sr(study: str, series: str) -> bytes:
    """A Basic Text SR: its DICOMDIR record is an SR DOCUMENT, built from its header."""
    no_image: dict[str, Any] = dict.fromkeys(IMAGE_KEYWORDS)  # None deletes
    ds = make_dataset(StudyInstanceUID=study, SeriesInstanceUID=series, **no_image)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "SR", 3, 1
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ContentDate, ds.ContentTime, ds.ValueType = "20240131", "101530", "CONTAINER"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "18748-4", "LN", "Report"
    ds.ConceptNameCodeSequence = [code]
    return to_bytes(ds)


class Study:
    """Two CT series of three instances, a PDF and an SR of one patient with a non-ASCII name."""

    def __init__(self) -> None:
        self.uid = generate_uid()
        self.series = [generate_uid(), generate_uid(), generate_uid()]
        common = {"StudyInstanceUID": self.uid, "PatientName": "Müller^Jürgen"}
        self.instances = [
            make_instance(
                SeriesInstanceUID=self.series[s],
                SeriesNumber=s + 1,
                InstanceNumber=i + 1,
                **common,
            )
            for s in range(2)
            for i in range(3)
        ]
        pdf = make_pdf_dataset(b"%PDF-1.4 lightbox", SeriesInstanceUID=self.series[2], **common)
        self.instances.append(to_bytes(pdf))
        self.instances.append(_sr(self.uid, self.series[2]))

    async def store(self, http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> None:
        response = await http.post(
            f"{ROOT}/studies",
            content=multipart(self.instances),
            headers={**stow_headers(), **(headers or {})},
        )
        assert response.status_code == 200, response.text


def dcmtk_accepts(dicomdir: Path, *, images: int) -> None:
    """DCMTK reads ``dicomdir`` as a PS3.10 file and a DICOMDIR with ``images`` IMAGE records."""
    check = subprocess.run(["dcmftest", str(dicomdir)], capture_output=True, text=True)
    assert check.stdout.startswith("yes"), check.stdout
    dump = subprocess.run(["dcmdump", "-E", "+L", str(dicomdir)], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    assert dump.stdout.count('"Directory Record" IMAGE') == images


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _sop_uids(instances: list[bytes]) -> set[str]:
    return {dcmread(io.BytesIO(raw)).SOPInstanceUID for raw in instances}


def _extract(body: bytes, root: Path) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None  # every CRC-32 right
    archive.extractall(root)
    return archive


async def _as_stored(http: httpx.AsyncClient, study: str, series: str, sop: str) -> bytes:
    response = await http.get(
        f"{ROOT}/studies/{study}/series/{series}/instances/{sop}",
        headers={"Accept": "application/dicom; transfer-syntax=*"},
    )
    assert response.status_code == 200
    return response.content


async def test_study_as_zip_is_a_ps310_file_set(client: httpx.AsyncClient, tmp_path: Path) -> None:
    study = Study()
    await study.store(client)
    response = await client.get(f"{ROOT}/studies/{study.uid}", headers={"Accept": ZIP})
    assert response.status_code == 200
    assert response.headers["content-type"] == ZIP
    assert response.headers["content-disposition"] == f'attachment; filename="{study.uid}.zip"'

    archive = _extract(response.content, tmp_path)
    names = archive.namelist()
    assert names[0] == "DICOMDIR"
    for name in names[1:]:  # PS3.10 §8.2: components of up to 8 of A-Z 0-9 _
        parts = name.split("/")
        assert len(parts) == 4
        assert all(len(p) == 8 and p.isupper() and p.isalnum() for p in parts), name
    assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())

    with read_fileset(tmp_path / "DICOMDIR") as fileset:
        await _check_fileset(client, study, fileset, len(names) - 1)

    dcmtk_accepts(tmp_path / "DICOMDIR", images=6)


async def _check_fileset(
    client: httpx.AsyncClient, study: Study, fileset: FileSet, files: int
) -> None:
    """Every instance referenced, each file byte-identical to WADO-RS as stored."""
    assert len(fileset) == len(study.instances) == files
    assert {i.SOPInstanceUID for i in fileset} == _sop_uids(study.instances)
    records = {i.SOPInstanceUID: i for i in fileset}
    for instance in fileset:
        data = _read(instance.path)
        ds = dcmread(io.BytesIO(data))
        assert ds.SOPInstanceUID == instance.ReferencedSOPInstanceUIDInFile
        assert ds.file_meta.TransferSyntaxUID == instance.ReferencedTransferSyntaxUIDInFile
        stored = await _as_stored(client, study.uid, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert data == stored  # byte-identical to WADO-RS
    kinds = {records[uid].DirectoryRecordType for uid in records}
    assert kinds == {"IMAGE", "ENCAP DOC", "SR DOCUMENT"}
    patient = fileset.find(PatientID="PID-1")[0].node.parent.parent.parent
    assert str(patient._record.PatientName) == "Müller^Jürgen"


async def test_series_as_zip_holds_that_series(client: httpx.AsyncClient, tmp_path: Path) -> None:
    study = Study()
    await study.store(client)
    response = await client.get(
        f"{ROOT}/studies/{study.uid}/series/{study.series[1]}",
        headers={"Accept": f"{ZIP}; transfer-syntax=*"},
    )
    assert response.status_code == 200
    assert response.headers["content-disposition"].endswith(f'"{study.series[1]}.zip"')
    _extract(response.content, tmp_path)
    with read_fileset(tmp_path / "DICOMDIR") as fileset:
        assert {i.SOPInstanceUID for i in fileset} == _sop_uids(study.instances[3:6])
        assert [i.InstanceNumber for i in fileset] == [1, 2, 3]


async def test_the_accept_header_chooses(client: httpx.AsyncClient) -> None:
    study = Study()
    await study.store(client)
    url = f"{ROOT}/studies/{study.uid}"
    multipart_type = 'multipart/related; type="application/dicom"'
    for accept, expected in (
        ("*/*", "multipart/related"),
        (f"{multipart_type}, {ZIP}", "multipart/related"),
        (f"{multipart_type}; q=0.5, {ZIP}", ZIP),
        (ZIP, ZIP),
    ):
        response = await client.get(url, headers={"Accept": accept})
        assert response.status_code == 200, accept
        assert response.headers["content-type"].startswith(expected), accept
    by_query = await client.get(url, params={"accept": ZIP}, headers={"Accept": "*/*"})
    assert by_query.headers["content-type"] == ZIP
    # instances go in as stored: another transfer syntax is not a ZIP we make
    refused = await client.get(
        url, headers={"Accept": f"{ZIP}; transfer-syntax=1.2.840.10008.1.2.4.50"}
    )
    assert refused.status_code == 406
    # one instance is never a ZIP (the route is the study's and the series' only)
    single = await client.get(
        f"{url}/series/{study.series[0]}/instances/x", headers={"Accept": ZIP}
    )
    assert single.status_code in (400, 406)


async def test_unknown_and_deleted_studies(client: httpx.AsyncClient) -> None:
    unknown = await client.get(f"{ROOT}/studies/{generate_uid()}", headers={"Accept": ZIP})
    assert unknown.status_code == 404
    study = Study()
    await study.store(client)
    assert (await client.delete(f"{ROOT}/studies/{study.uid}")).status_code == 204
    gone = await client.get(f"{ROOT}/studies/{study.uid}", headers={"Accept": ZIP})
    assert gone.status_code == 410
    series = await client.get(
        f"{ROOT}/studies/{study.uid}/series/{study.series[0]}", headers={"Accept": ZIP}
    )
    assert series.status_code == 410


@pytest.mark.parametrize("deny_as_not_found", [False, True])
async def test_a_study_scoped_token_gets_its_study_only(
    database_url: str, tmp_path: Path, deny_as_not_found: bool
) -> None:
    settings: Settings = auth_settings(
        database_url, tmp_path / "data", deny_as_not_found=deny_as_not_found
    )
    async with auth_client(settings) as (_services, http, tokens):
        mine, other = Study(), Study()
        writer = tokens.headers()
        await mine.store(http, writer)
        await other.store(http, writer)
        share = tokens.headers(["read"], studies=[mine.uid])
        ok = await http.get(f"{ROOT}/studies/{mine.uid}", headers={**share, "Accept": ZIP})
        assert ok.status_code == 200
        assert ok.headers["content-type"] == ZIP
        refused = await http.get(f"{ROOT}/studies/{other.uid}", headers={**share, "Accept": ZIP})
        assert refused.status_code == (404 if deny_as_not_found else 403)
        assert refused.headers.get("content-type") != ZIP

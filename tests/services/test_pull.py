"""Pull from a real legacy PACS (Orthanc 1.10 over DIMSE): everything arrives as the source holds
it, a cancelled or partly held pull fetches only what is missing, failures are reported."""

import asyncio
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from app.config import Settings
from app.dimse.pull import DimsePullSources
from app.errors import BadRequest, NotFound
from app.index.repository import InstanceIndex
from app.services.audit import AuditFilter
from app.services.container import Services, open_services
from app.services.jobs import JobState
from app.services.pull import PullProgress, PullRequest
from tests.conftest import make_settings, truncate
from tests.factories import make_dataset, to_bytes
from tests.peers.legacy import dataset_bytes, instance_files, legacy_orthanc, load, unused_port
from tests.peers.orthanc import Orthanc

#: files of pydicom's corpus in other transfer syntaxes: implicit VR, RLE, explicit big endian
#: (Orthanc sends them as it stores them), and JPEG 2000 in the study of the first
AS_STORED = ("MR_small_implicit.dcm", "SC_rgb_rle.dcm", "emri_small_big_endian.dcm")
#: Orthanc (DCMTK) re-encodes this one when it sends it (same elements and values, not the
#: same bytes): compared element by element
REENCODED = ("JPEG2000.dcm",)


@dataclass
class Legacy:
    """The loaded source: its files by SOP Instance UID, its studies, and Orthanc."""

    orthanc: Orthanc
    files: dict[str, bytes]
    studies: dict[str, list[str]]
    #: SOP Instance UIDs of the synthetic study of patient MIG-1, by series (CT, then MR)
    mig1: tuple[list[str], list[str]]

    @property
    def total(self) -> int:
        return len(self.files)


def _synthetic() -> tuple[list[bytes], tuple[list[str], list[str]]]:
    files: list[bytes] = []
    mig1: tuple[list[str], list[str]] = ([], [])
    plan = [("MIG-1", "20240110", ("CT", "MR"), 3), ("MIG-2", "20240220", ("CT",), 4)]
    plan.append(("MIG-3", "20240305", ("CT",), 5))
    for patient, date, modalities, count in plan:
        study = generate_uid()
        for number, modality in enumerate(modalities, 1):
            series = generate_uid()
            for instance in range(count):
                ds = make_dataset(
                    StudyInstanceUID=study,
                    SeriesInstanceUID=series,
                    PatientID=patient,
                    StudyDate=date,
                    Modality=modality,
                    SeriesNumber=number,
                    InstanceNumber=instance + 1,
                )
                files.append(to_bytes(ds))
                if patient == "MIG-1":
                    mig1[number - 1].append(str(ds.SOPInstanceUID))
    return files, mig1


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Legacy]:
    files, mig1 = _synthetic()
    for name in AS_STORED + REENCODED:
        files.append(Path(get_testdata_file(name) or "").read_bytes())
    with legacy_orthanc(tmp_path_factory.mktemp("orthanc")) as orthanc:
        load(orthanc, files)
        by_sop = instance_files(orthanc)
        studies: dict[str, list[str]] = {}
        for sop, data in by_sop.items():
            study = str(dcmread(io.BytesIO(data), stop_before_pixels=True).StudyInstanceUID)
            studies.setdefault(study, []).append(sop)
        yield Legacy(orthanc, by_sop, studies, mig1)


@pytest_asyncio.fixture
async def pulling(services: Services, settings: Settings, legacy: Legacy) -> Services:
    """The services with the DIMSE client plugged in, and the source registered."""
    services.pull.sources = DimsePullSources.from_settings(settings)
    await services.aes.add("LEGACY", "127.0.0.1", legacy.orthanc.dicom_port)
    return services


async def _held(services: Services, sop_uids: list[str] | dict[str, bytes]) -> dict[str, bytes]:
    """The blobs Lightbox holds among ``sop_uids``, by SOP Instance UID."""
    async with services.db.read() as conn:
        found = await InstanceIndex(conn).find_instances(sop_uids)
    return {
        sop: b"".join([chunk async for chunk in services.store.open(ref.blob_key)])
        for sop, ref in found.items()
    }


def _assert_as_sent(held: dict[str, bytes], legacy: Legacy) -> None:
    """Every instance in the syntax the source holds it in, its data set byte for byte."""
    assert set(held) == set(legacy.files)
    reencoded = {
        str(dcmread(get_testdata_file(name) or "", stop_before_pixels=True).SOPInstanceUID)
        for name in REENCODED
    }
    for sop, blob in held.items():
        ours = dcmread(io.BytesIO(blob))
        theirs = dcmread(io.BytesIO(legacy.files[sop]))
        assert ours.file_meta.TransferSyntaxUID == theirs.file_meta.TransferSyntaxUID, sop
        assert ours.file_meta.SourceApplicationEntityTitle == "LEGACY"
        if sop in reencoded:
            assert ours == theirs, sop
        else:
            assert dataset_bytes(blob) == dataset_bytes(legacy.files[sop]), sop


async def test_pull_everything_then_nothing_again(pulling: Services, legacy: Legacy) -> None:
    services = pulling
    job = await services.pull.prepare(PullRequest.parse("LEGACY"), owner="pull-everything")
    seen: list[PullProgress] = []
    report = await services.pull.run(job.id, concurrency=3, on_progress=seen.append)
    assert (report.state, report.reason, report.failures) == (JobState.COMPLETED, None, [])
    assert report.fetched == legacy.total
    assert report.progress.units_total == report.progress.units_done == len(legacy.studies)
    assert report.progress.instances_stored == legacy.total
    assert report.progress.instances_total == legacy.total
    assert seen[-1].instances_done == legacy.total
    assert seen[-1].units_finished == len(legacy.studies)
    _assert_as_sent(await _held(services, legacy.files), legacy)

    # the same request again: its job, every study done, nothing fetched
    again = await services.pull.prepare(PullRequest.parse("LEGACY"), owner="pull-everything")
    assert again.id == job.id
    second = await services.pull.run(job.id)
    assert (second.state, second.fetched) == (JobState.COMPLETED, 0)
    # another request covering held studies: a new job, which skips them all
    other = await services.pull.prepare(
        PullRequest.parse("LEGACY", {"PatientID": "MIG-*"}), owner="pull-everything"
    )
    assert other.id != job.id
    third = await services.pull.run(other.id)
    assert (third.state, third.fetched, third.skipped) == (JobState.COMPLETED, 0, 3)
    assert third.progress.instances_held == 3 + 3 + 4 + 5

    await services.audit.flush()
    rows, _ = await services.audit.search(AuditFilter(actor="pull-everything"), limit=100, offset=0)
    studies = [r for r in rows if r["action"] == "pull-study" and r["count"]]
    mig2 = next(r for r in studies if r["patient_id"] == "MIG-2")
    assert (mig2["count"], mig2["outcome"], mig2["source"]) == (
        4,
        "success",
        f"127.0.0.1:{legacy.orthanc.dicom_port}",
    )
    assert mig2["study_uid"] in legacy.studies
    assert {r["action"] for r in rows} >= {"pull-start", "pull-study", "pull-finish"}
    assert rows[0]["action"] == "pull-finish"
    assert rows[0]["outcome"] == "success"


async def test_a_cancelled_pull_resumes_with_what_is_missing(
    pulling: Services, legacy: Legacy
) -> None:
    services = pulling
    job = await services.pull.prepare(PullRequest.parse("LEGACY"), owner="migrator")
    asked: list[asyncio.Task[object]] = []

    def cancel_mid_way(progress: PullProgress) -> None:
        if progress.fetched >= 5 and not asked:
            asked.append(asyncio.ensure_future(services.jobs.cancel(job.id)))

    first = await services.pull.run(job.id, concurrency=1, on_progress=cancel_mid_way)
    await asked[0]
    assert (first.state, first.reason) == (JobState.CANCELLED, "cancelled on request")
    assert 5 <= first.fetched < legacy.total
    held = await _held(services, legacy.files)
    # what arrived before the cancel was committed, none of it half-stored
    assert len(held) == first.fetched
    assert (await services.jobs.get(job.id)).state is JobState.CANCELLED

    second = await services.pull.run(job.id, concurrency=2)
    assert second.state is JobState.COMPLETED
    assert second.fetched == legacy.total - len(held)  # nothing fetched twice
    _assert_as_sent(await _held(services, legacy.files), legacy)


async def test_a_partly_held_study_fetches_only_the_rest(pulling: Services, legacy: Legacy) -> None:
    services = pulling
    ct, mr = legacy.mig1
    session = services.ingest.session()
    for sop in (ct[0], mr[2]):
        spool = services.ingest.spool()
        spool.write(legacy.files[sop])
        await session.add(spool.finish())
    assert len((await session.finish()).stored) == 2
    job = await services.pull.prepare(
        PullRequest.parse("LEGACY", {"PatientID": "MIG-1"}), owner=None
    )
    report = await services.pull.run(job.id)
    assert (report.state, report.fetched) == (JobState.COMPLETED, 4)
    (item,) = await services.jobs.items(job.id)
    assert (item.state, item.expected, item.stored, item.held) == ("done", 6, 4, 2)
    assert set(await _held(services, ct + mr)) == set(ct + mr)


async def test_series_level_with_a_series_key(pulling: Services, legacy: Legacy) -> None:
    services = pulling
    request = PullRequest.parse(
        "LEGACY", [("PatientID", "MIG-1"), ("Modality", "MR")], level="series"
    )
    job = await services.pull.prepare(request, owner=None)
    report = await services.pull.run(job.id)
    assert (report.state, report.fetched, report.progress.units_total) == (
        JobState.COMPLETED,
        3,
        1,
    )
    ct, mr = legacy.mig1
    assert set(await _held(services, ct + mr)) == set(mr)


async def test_instances_refused_by_ingest_fail_their_study(
    database_url: str, tmp_path: Path, legacy: Legacy
) -> None:
    # an archive that takes CT only: the other studies' instances are refused, and reported
    settings = make_settings(
        database_url, tmp_path / "data", sop_class_allow_list=["1.2.840.10008.5.1.4.1.1.2"]
    )
    async with open_services(
        settings, pull_sources=DimsePullSources.from_settings(settings)
    ) as services:
        await truncate(services.db)
        await services.aes.add("LEGACY", "127.0.0.1", legacy.orthanc.dicom_port)
        job = await services.pull.prepare(PullRequest.parse("LEGACY"), owner=None)
        report = await services.pull.run(job.id)
    others = len(legacy.studies) - 3  # the three synthetic studies are CT
    assert report.state is JobState.FAILED
    assert report.reason == f"{others} of {len(legacy.studies)} studies failed"
    assert report.progress.units_done == 3
    assert len(report.failures) == others
    for failure in report.failures:
        assert failure.error is not None
        assert "instances not received" in failure.error
        assert failure.error.endswith("SOP class not accepted by this archive")


async def test_an_unreachable_source_fails_the_job(pulling: Services) -> None:
    services = pulling
    await services.aes.add("GONE", "127.0.0.1", unused_port())
    job = await services.pull.prepare(PullRequest.parse("GONE"), owner="migrator")
    report = await services.pull.run(job.id)
    assert report.state is JobState.FAILED
    assert report.reason is not None
    assert report.reason.startswith("cannot reach GONE at 127.0.0.1:")
    assert (await services.jobs.get(job.id)).row.reason == report.reason
    await services.audit.flush()
    rows, _ = await services.audit.search(AuditFilter(action="pull-finish"), limit=5, offset=0)
    assert rows[0]["outcome"] == "failure"
    assert report.reason in rows[0]["detail"]


async def test_a_source_that_rejects_us_fails_the_job(pulling: Services, legacy: Legacy) -> None:
    services = pulling
    # Orthanc checks the called AE title: under another title it rejects the association
    await services.aes.add("NOT-ORTHANC", "127.0.0.1", legacy.orthanc.dicom_port)
    job = await services.pull.prepare(PullRequest.parse("NOT-ORTHANC"), owner=None)
    report = await services.pull.run(job.id)
    assert report.state is JobState.FAILED
    assert report.reason is not None
    assert "NOT-ORTHANC at 127.0.0.1" in report.reason
    assert "rejected the association" in report.reason


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", {}), "a source AE title is required"),
        (("X", {"PatientNam": "A"}), "unknown attribute 'PatientNam'"),
        (("X", {"SOPInstanceUID": "1.2"}), "SOPInstanceUID is not a study or series matching key"),
        (("X", {"Modality": "CT"}), "Modality is a series-level key: pull with level SERIES"),
        (("X", {"QueryRetrieveLevel": "IMAGE"}), "QueryRetrieveLevel is set by the level"),
        (("X", {}, "PATIENT"), "invalid level 'PATIENT': STUDY or SERIES"),
        (("X", {}, "STUDY", "send"), "invalid method 'send': get or move"),
        (("X", [("PatientID", "A"), ("00100020", "B")]), "PatientID is given twice"),
    ],
)
def test_invalid_requests_are_refused(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        PullRequest.parse(*args)  # type: ignore[arg-type]


async def test_an_unknown_source_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound, match="no remote AE 'NOWHERE' is known"):
        await services.pull.prepare(PullRequest.parse("NOWHERE"), owner=None)
    assert (await services.jobs.page(limit=10, offset=0))[1] == 0

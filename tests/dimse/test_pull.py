"""The DIMSE pull source with Lightbox's own listener in the process (issue 21 point 7): a pull by
C-MOVE to ourselves (the listener's C-STORE SCP ingests), and a pull by C-GET with file-backed
reception (the data sets written to files as they arrive); Orthanc 1.10 the legacy PACS."""

import io
from collections.abc import Iterator

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import _config as pynetdicom_config

from app.dimse.pull import DimsePullSources
from app.index.repository import InstanceIndex
from app.services.jobs import JobState
from app.services.pull import PullRequest
from tests.conftest import truncate
from tests.dimse.conftest import Running, qr_settings, running
from tests.factories import make_dataset, to_bytes
from tests.peers.legacy import LEGACY, dataset_bytes, instance_files, legacy_orthanc, load
from tests.peers.orthanc import Modality, Orthanc

STUDIES, SERIES, PER_SERIES = 3, 2, 3


@pytest.fixture(scope="module")
def lightbox(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    settings = qr_settings(database_url, tmp_path_factory.mktemp("lb") / "data")
    with running(settings) as server:
        server.services.pull.sources = DimsePullSources.from_settings(settings)
        yield server


@pytest.fixture(scope="module")
def legacy(lightbox: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    # the source knows Lightbox's listener: it can C-MOVE to it
    modalities = {"lightbox": Modality("LIGHTBOX", lightbox.port)}
    with legacy_orthanc(tmp_path_factory.mktemp("orthanc"), modalities=modalities) as peer:
        files = []
        for s in range(STUDIES):
            study = generate_uid()
            for _ in range(SERIES):
                series = generate_uid()
                files += [
                    to_bytes(
                        make_dataset(
                            StudyInstanceUID=study,
                            SeriesInstanceUID=series,
                            PatientID=f"MOVE-{s}",
                            InstanceNumber=i + 1,
                        )
                    )
                    for i in range(PER_SERIES)
                ]
        load(peer, files)
        yield peer


def _pull_and_check(lightbox: Running, legacy: Orthanc, method: str) -> None:
    services = lightbox.services
    lightbox.run(services.aes.add(LEGACY, "127.0.0.1", legacy.dicom_port))
    request = PullRequest.parse(LEGACY, {"PatientID": "MOVE-*"}, method=method)
    job = lightbox.run(services.pull.prepare(request, owner="migrator"))
    report = lightbox.run(services.pull.run(job.id, concurrency=2))
    assert (report.state, report.failures) == (JobState.COMPLETED, [])
    assert report.progress.units_done == STUDIES
    assert report.progress.instances_stored == STUDIES * SERIES * PER_SERIES
    source = instance_files(legacy)

    async def held() -> dict[str, bytes]:
        async with services.db.read() as conn:
            found = await InstanceIndex(conn).find_instances(source)
        return {
            sop: b"".join([chunk async for chunk in services.store.open(ref.blob_key)])
            for sop, ref in found.items()
        }

    blobs = lightbox.run(held())
    assert set(blobs) == set(source)
    for sop, blob in blobs.items():
        assert dataset_bytes(blob) == dataset_bytes(source[sop]), sop
        meta = dcmread(io.BytesIO(blob), stop_before_pixels=True).file_meta
        assert meta.SourceApplicationEntityTitle == LEGACY


def test_pull_by_c_move_to_our_listener(lightbox: Running, legacy: Orthanc) -> None:
    lightbox.run(_emptied(lightbox))
    _pull_and_check(lightbox, legacy, "move")
    # the instances came in by our C-STORE SCP: its audit rows name the source as the caller
    assert lightbox.audit_rows(LEGACY, "store")


def test_pull_by_c_get_with_file_backed_reception(lightbox: Running, legacy: Orthanc) -> None:
    assert pynetdicom_config.STORE_RECV_CHUNKED_DATASET  # the listener turned it on
    lightbox.run(_emptied(lightbox))
    _pull_and_check(lightbox, legacy, "get")


async def _emptied(lightbox: Running) -> None:
    await truncate(lightbox.services.db)

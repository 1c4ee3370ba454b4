"""Orthanc against Lightbox's Query/Retrieve SCP (issue 21's peer tests): Orthanc as a C-FIND
SCU of Lightbox, and as the destination of a C-MOVE; on PostgreSQL and SQLite."""

import io
from collections.abc import Iterator

import pytest
from pydicom import Dataset, dcmread
from pynetdicom import AE

from app.config import RemoteAeSettings
from tests.conftest import truncate
from tests.dimse.conftest import Running, calling_ae, ingest, qr_settings, running
from tests.dimse.ports import free_port
from tests.dimse.test_retrieve import Study
from tests.part10 import dataset_bytes
from tests.peers.orthanc import Modality, Orthanc, orthanc
from tests.peers.ports import free_http_port

STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


@pytest.fixture(scope="module")
def orthanc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def module_lightbox(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, orthanc_port: int
) -> Iterator[Running]:
    remote = [RemoteAeSettings(ae_title="ORTHANC", host="127.0.0.1", port=orthanc_port)]
    settings = qr_settings(database_url, tmp_path_factory.mktemp("lb") / "data", remote_aes=remote)
    with running(settings) as server:
        yield server


@pytest.fixture(scope="module")
def peer(
    module_lightbox: Running, orthanc_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Orthanc]:
    modalities = {"lightbox": Modality("LIGHTBOX", module_lightbox.port)}
    with orthanc(
        tmp_path_factory.mktemp("orthanc"),
        http_port=free_http_port(),
        dicom_port=orthanc_port,
        modalities=modalities,
    ) as started:
        yield started


@pytest.fixture
def lightbox(module_lightbox: Running, peer: Orthanc) -> Running:
    module_lightbox.run(truncate(module_lightbox.services.db))
    for orthanc_id in peer.instances():
        peer.rest("DELETE", f"/instances/{orthanc_id}")
    return module_lightbox


def test_orthanc_queries_lightbox(lightbox: Running, peer: Orthanc) -> None:
    """Orthanc's C-FIND SCU (REST /modalities/lightbox/query) at study and series level."""
    study = Study(count=2)
    ingest(lightbox, *study.files.values())
    studies = peer.find("lightbox", "Study", {"PatientID": "P1", "StudyInstanceUID": ""})
    assert [answer["StudyInstanceUID"] for answer in studies] == [study.uid]
    series = peer.find(
        "lightbox", "Series", {"StudyInstanceUID": study.uid, "Modality": "", "SeriesNumber": ""}
    )
    assert sorted(answer["SeriesInstanceUID"] for answer in series) == sorted(
        [study.series, study.jpeg_series]
    )
    assert {answer["Modality"] for answer in series} == {"CT", "OT"}


def test_lightbox_moves_to_orthanc(lightbox: Running, peer: Orthanc) -> None:
    """A C-MOVE to Orthanc: every instance arrives (JPEG as stored, Orthanc accepting it), the
    data set bytes as Lightbox holds them; the C-MOVE ends when Orthanc has them all."""
    study = Study(count=3)
    ingest(lightbox, *study.files.values())
    ae = AE(ae_title=calling_ae())
    ae.add_requested_context(STUDY_MOVE)
    assoc = ae.associate("127.0.0.1", lightbox.port, ae_title="LIGHTBOX")
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study.uid
    try:
        statuses = [status for status, _ in assoc.send_c_move(identifier, "ORTHANC", STUDY_MOVE)]
    finally:
        assoc.release()
    assert statuses[-1].Status == 0x0000
    assert statuses[-1].NumberOfCompletedSuboperations == len(study.files)
    held = {peer.sop_uid(i): peer.instance_file(i) for i in peer.instances()}
    assert set(held) == set(study.files)
    for uid, raw in held.items():
        original = dcmread(io.BytesIO(study.files[uid]), stop_before_pixels=True)
        received = dcmread(io.BytesIO(raw), stop_before_pixels=True)
        assert received.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert dataset_bytes(raw) == dataset_bytes(study.files[uid]), uid

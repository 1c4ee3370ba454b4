"""C-MOVE SCP and C-GET SCP (DIMSE-11..13) against real peers: DCMTK movescu with a storescp
destination, getscu, pynetdicom for C-CANCEL, faults and exact statuses; on PostgreSQL and
SQLite. Instances arrive as stored (the data set bytes equal the ingested ones) unless the peer
took no context for their syntax, then transcoded by the WADO-RS decoders."""

import io
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import CTImageStorage, SecondaryCaptureImageStorage, generate_uid
from pynetdicom import AE, build_role, evt

from app.config import RemoteAeSettings
from app.dimse.destinations import MAX_ATTEMPTS
from app.dimse.suboperations import Exchange
from app.main import create_app
from tests.conftest import truncate
from tests.dimse.conftest import Running, calling_ae, ingest, qr_settings, running
from tests.dimse.ports import free_port
from tests.dimse.qr_peers import (
    getscu,
    movescu,
    pynetdicom_storescp,
    received_data_set,
    storescp,
)
from tests.factories import make_dataset, to_bytes
from tests.part10 import dataset_bytes

STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
#: the C-MOVE destinations the module's listener knows, each on a port of its own
DESTINATIONS = ("STORESCP", "PYSCP", "REFUSER", "DROPPER")


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {title: free_port() for title in DESTINATIONS}


@pytest.fixture(scope="module")
def module_mover(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int]
) -> Iterator[Running]:
    remote = [RemoteAeSettings(ae_title=t, host="127.0.0.1", port=p) for t, p in ports.items()]
    settings = qr_settings(
        database_url, tmp_path_factory.mktemp("move") / "data", remote_aes=remote
    )
    with running(settings) as server:
        yield server


@pytest.fixture
def mover(module_mover: Running) -> Running:
    module_mover.run(truncate(module_mover.services.db))
    return module_mover


def jpeg_instance(study: str, series: str) -> bytes:
    """A JPEG Baseline secondary capture (pydicom's test file) in the given study."""
    path = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")
    assert isinstance(path, str)
    ds = dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID = "P1"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class Study:
    """A study of CT images (Explicit and Implicit VR) and one JPEG secondary capture."""

    def __init__(self, count: int = 3) -> None:
        self.uid, self.series, self.jpeg_series = (str(generate_uid()) for _ in range(3))
        self.files: dict[str, bytes] = {}
        for n in range(count):
            syntax = IMPLICIT if n % 2 else EXPLICIT
            ds = make_dataset(
                syntax,
                StudyInstanceUID=self.uid,
                SeriesInstanceUID=self.series,
                InstanceNumber=n + 1,
                PatientID="P1",
            )
            self.files[str(ds.SOPInstanceUID)] = to_bytes(ds)
        jpeg = jpeg_instance(self.uid, self.jpeg_series)
        self.jpeg_uid = str(dcmread(io.BytesIO(jpeg), stop_before_pixels=True).SOPInstanceUID)
        self.files[self.jpeg_uid] = jpeg


def _move(
    server: Running,
    destination: str,
    identifier: Dataset,
    model: str = STUDY_MOVE,
    title: str | None = None,
    cancel_after: int | None = None,
) -> list[Any]:
    """A C-MOVE with pynetdicom as SCU: every response's status data set."""
    ae = AE(ae_title=title or calling_ae())
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="LIGHTBOX")
    assert assoc.is_established
    statuses = []
    try:
        for n, (status, _) in enumerate(
            assoc.send_c_move(identifier, destination, model, msg_id=9)
        ):
            statuses.append(status)
            if cancel_after is not None and n + 1 == cancel_after:
                assoc.send_c_cancel(9, assoc.accepted_contexts[0].context_id)
    finally:
        assoc.release()
    return statuses


def _study(uid: str, level: str = "STUDY", **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.StudyInstanceUID = uid
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_movescu_to_storescp_sends_the_stored_bytes(
    mover: Running, ports: dict[str, int], tmp_path: Path
) -> None:
    """DCMTK movescu asks for a study to go to a DCMTK storescp accepting every syntax: each
    instance arrives as stored, Implicit VR and JPEG included (data set bytes equal to the
    ingested ones), with the Move Originator set; the C-MOVE ends when they have arrived."""
    study = Study()
    ingest(mover, *study.files.values())
    title = calling_ae()
    with storescp(tmp_path / "in", "STORESCP", "+B", "+xa", port=ports["STORESCP"]) as scp:
        run = movescu(
            mover.port, "STORESCP", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study.uid}",
            workdir=tmp_path / "mv", calling=title,
        )  # fmt: skip
        received = scp.received()
        log = scp.log.read_text()
    assert run.returncode == 0, run.log
    assert "Received Final Move Response (Success)" in run.log
    assert run.log.count("Received Move Response") == len(study.files)  # a Pending each
    by_uid = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in received}
    assert set(by_uid) == set(study.files)
    for uid, path in by_uid.items():
        assert dataset_bytes(path.read_bytes()) == dataset_bytes(study.files[uid]), uid
    assert log.count("Received Store Request") == len(study.files)
    [row] = mover.audit_rows(title, "retrieve")
    assert (row["study_uid"], row["count"], row["status"]) == (study.uid, 4, 0)
    assert row["patient_id"] == "P1"
    assert "to STORESCP" in row["detail"]


def test_storescp_without_compression_gets_the_jpeg_decoded(
    mover: Running, ports: dict[str, int], tmp_path: Path
) -> None:
    """A destination that accepts only uncompressed syntaxes gets the JPEG instance decoded to
    Explicit VR Little Endian (the WADO-RS decoders), the others as stored."""
    study = Study(count=1)
    ingest(mover, *study.files.values())
    with storescp(tmp_path / "in", "STORESCP", "+B", port=ports["STORESCP"]) as scp:
        statuses = _move(mover, "STORESCP", _study(study.uid))
        received = {dcmread(p).SOPInstanceUID: dcmread(p) for p in scp.received()}
    assert statuses[-1].Status == 0x0000
    assert statuses[-1].NumberOfCompletedSuboperations == 2
    jpeg = received[study.jpeg_uid]
    assert jpeg.file_meta.TransferSyntaxUID == EXPLICIT
    original = dcmread(io.BytesIO(study.files[study.jpeg_uid]))
    assert jpeg.pixel_array.shape == original.pixel_array.shape


def test_move_source_of_the_pending_counts_and_originator(
    mover: Running, ports: dict[str, int]
) -> None:
    """Each sub-operation is followed by a Pending response with the four counts; every
    C-STORE names the C-MOVE's requestor and message ID (0000,1030/1031)."""
    study = Study(count=3)
    ingest(mover, *study.files.values())
    title = calling_ae()
    with pynetdicom_storescp("PYSCP", ports["PYSCP"]) as received:
        statuses = _move(mover, "PYSCP", _study(study.uid), title=title)
    pending = [
        (s.NumberOfRemainingSuboperations, s.NumberOfCompletedSuboperations) for s in statuses[:-1]
    ]
    assert [s.Status for s in statuses[:-1]] == [0xFF00] * 4
    assert pending == [(3, 1), (2, 2), (1, 3), (0, 4)]
    assert statuses[-1].Status == 0x0000
    assert "NumberOfRemainingSuboperations" not in statuses[-1]
    requests = [request for *_, request in received.instances]
    assert {r.MoveOriginatorApplicationEntityTitle for r in requests} == {title}
    assert {r.MoveOriginatorMessageID for r in requests} == {9}
    # the destination took no JPEG context: it got the JPEG decoded, the rest as stored
    for uid, syntax, data, _ in received.instances:
        if uid == study.jpeg_uid:
            assert syntax == EXPLICIT
        else:
            assert data == dataset_bytes(study.files[uid])


def test_unknown_destination_is_a801(mover: Running) -> None:
    study = Study(count=1)
    ingest(mover, *study.files.values())
    title = calling_ae()
    [status] = _move(mover, "NOWHERE", _study(study.uid), title=title)
    assert status.Status == 0xA801
    assert "NOWHERE" in status.ErrorComment
    [row] = mover.audit_rows(title, "retrieve")
    assert (row["outcome"], row["status"]) == ("failure", 0xA801)


def test_identifier_errors(mover: Running) -> None:
    """A retrieve names its objects by unique keys: no level, no key, a wildcard, a key of a
    level below are refused with their status."""
    no_level = Dataset()
    no_level.StudyInstanceUID = "1.2.3"
    cases = [
        (no_level, 0xA900),
        (_study("", level="STUDY"), 0xA900),
        (_study("1.2.3", level="SERIES"), 0xA900),
        (_study("1.2.3", level="STUDY", SOPInstanceUID="1.2.3.4"), 0xA900),
        (_study("1.2.*"), 0xC000),
    ]
    for identifier, expected in cases:
        [status] = _move(mover, "PYSCP", identifier)
        assert status.Status == expected, identifier


def test_a_refusing_destination_fails_every_sub_operation(
    mover: Running, ports: dict[str, int], tmp_path: Path
) -> None:
    """A destination that refuses associations: every sub-operation fails (0xA702, all
    listed) after MAX_ATTEMPTS attempts, not one attempt per instance."""
    study = Study(count=5)
    ingest(mover, *study.files.values())
    with storescp(tmp_path / "in", "REFUSER", "--refuse", port=ports["REFUSER"]) as scp:
        statuses = _move(mover, "REFUSER", _study(study.uid))
        log = scp.log.read_text()
    final = statuses[-1]
    assert final.Status == 0xA702
    assert final.NumberOfFailedSuboperations == 6
    assert final.NumberOfCompletedSuboperations == 0
    assert log.count("Refusing Association") == MAX_ATTEMPTS  # not one per instance


def _failed_list(mover: Running, destination: str, study_uid: str) -> tuple[Any, list[str]]:
    """The final status of a C-MOVE and its Failed SOP Instance UID List."""
    ae = AE(ae_title=calling_ae())
    ae.add_requested_context(STUDY_MOVE)
    assoc = ae.associate("127.0.0.1", mover.port, ae_title="LIGHTBOX")
    try:
        *_, (status, identifier) = assoc.send_c_move(_study(study_uid), destination, STUDY_MOVE)
    finally:
        assoc.release()
    failed = identifier.FailedSOPInstanceUIDList if identifier is not None else []
    return status, [str(u) for u in ([failed] if isinstance(failed, str) else failed)]


def test_a_destination_dropping_mid_way(mover: Running, ports: dict[str, int]) -> None:
    """The destination aborts its association at the third C-STORE: that instance fails and
    is listed, the next association carries the rest (0xB000)."""
    study = Study(count=5)
    ingest(mover, *study.files.values())
    with pynetdicom_storescp("DROPPER", ports["DROPPER"], abort_at=3) as received:
        status, failed = _failed_list(mover, "DROPPER", study.uid)
    assert status.Status == 0xB000
    assert (status.NumberOfCompletedSuboperations, status.NumberOfFailedSuboperations) == (5, 1)
    delivered = {uid for uid, *_ in received.instances}
    assert len(received.associations) == 2
    assert len(failed) == 1
    assert delivered | set(failed) == set(study.files)
    assert not delivered & set(failed)


def test_cancel_mid_move(mover: Running, ports: dict[str, int]) -> None:
    """C-CANCEL while sub-operations run: the move stops, the final status is Cancel with
    the counts and the number not sent."""
    study = Study(count=11)
    ingest(mover, *study.files.values())
    with pynetdicom_storescp("PYSCP", ports["PYSCP"], delay=0.05) as received:
        statuses = _move(mover, "PYSCP", _study(study.uid), cancel_after=1)
    final = statuses[-1]
    assert final.Status == 0xFE00
    sent = len(received.instances)
    assert 1 <= sent < len(study.files)
    assert final.NumberOfCompletedSuboperations == sent
    assert final.NumberOfRemainingSuboperations == len(study.files) - sent


def test_counts_beyond_the_us_range(
    mover: Running, ports: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """More sub-operations than a count can say (65,535 in US; here the bound lowered to 4 on
    the same code path): everything is sent, the counts on the wire stop at the bound, the
    final status stays exact."""
    monkeypatch.setattr(Exchange, "count_limit", 4)
    study = Study(count=9)
    ingest(mover, *study.files.values())
    with pynetdicom_storescp("PYSCP", ports["PYSCP"]) as received:
        statuses = _move(mover, "PYSCP", _study(study.uid))
    assert len(received.instances) == 10
    remaining = [s.NumberOfRemainingSuboperations for s in statuses[:-1]]
    completed = [s.NumberOfCompletedSuboperations for s in statuses[:-1]]
    assert remaining == [4, 4, 4, 4, 4, 4, 3, 2, 1, 0]
    assert completed == [1, 2, 3, 4, 4, 4, 4, 4, 4, 4]
    assert (statuses[-1].Status, statuses[-1].NumberOfCompletedSuboperations) == (0x0000, 4)


def test_patient_level_move_takes_every_study(mover: Running, ports: dict[str, int]) -> None:
    first, second = Study(count=1), Study(count=2)
    ingest(mover, *first.files.values(), *second.files.values())
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "PATIENT"
    identifier.PatientID = "P1"
    title = calling_ae()
    with pynetdicom_storescp("PYSCP", ports["PYSCP"]) as received:
        statuses = _move(mover, "PYSCP", identifier, PATIENT_MOVE, title=title)
    assert statuses[-1].Status == 0x0000
    assert {uid for uid, *_ in received.instances} == {*first.files, *second.files}
    rows = mover.audit_rows(title, "retrieve")
    assert sorted((r["study_uid"], r["count"]) for r in rows) == sorted(
        [(first.uid, 2), (second.uid, 3)]
    )


def test_getscu(mover: Running, tmp_path: Path) -> None:
    """DCMTK getscu, which proposes one context per SOP class with the uncompressed syntaxes
    (we take Explicit VR Little Endian): Explicit VR images arrive as stored, the Implicit VR
    one and the JPEG one transcoded; proposing Implicit VR only, an Explicit VR image arrives
    re-encoded in it."""
    study = Study(count=2)
    ingest(mover, *study.files.values())
    title = calling_ae()
    run = getscu(
        mover.port, tmp_path / "study", "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={study.uid}", extra=["+B", "-aet", title],
    )  # fmt: skip
    assert run.returncode == 0, run.log
    assert "Number of Completed Suboperations : 3" in run.log
    got = {dcmread(p).SOPInstanceUID: p for p in run.files}
    assert set(got) == set(study.files)
    for uid, path in got.items():
        received, original = dcmread(path), dcmread(io.BytesIO(study.files[uid]))
        assert received.file_meta.TransferSyntaxUID == EXPLICIT
        assert received.pixel_array.tolist() == original.pixel_array.tolist()
        if original.file_meta.TransferSyntaxUID == EXPLICIT:
            assert dataset_bytes(path.read_bytes()) == dataset_bytes(study.files[uid])
    [row] = mover.audit_rows(title, "retrieve")
    assert (row["study_uid"], row["count"]) == (study.uid, 3)


def test_c_get_transcodes_to_implicit_vr_for_a_peer_that_takes_nothing_else(
    mover: Running,
) -> None:
    """A requestor whose CT context takes Implicit VR Little Endian only: the Explicit VR
    image is re-encoded in it (the same decoders as WADO-RS), the Implicit VR one goes as
    stored."""
    study = Study(count=2)
    ingest(mover, *study.files.values())
    statuses, received = _c_get(
        mover, _study(study.uid, level="SERIES", SeriesInstanceUID=study.series),
        [CTImageStorage], syntaxes=[IMPLICIT],
    )  # fmt: skip
    assert statuses[-1].Status == 0x0000
    assert set(received) == set(study.files) - {study.jpeg_uid}
    for uid, data in received.items():
        original = dcmread(io.BytesIO(study.files[uid]))
        if original.file_meta.TransferSyntaxUID == IMPLICIT:
            assert data == dataset_bytes(study.files[uid])
        else:
            ds = dcmread(io.BytesIO(data), force=True)  # an Implicit VR data set, no File Meta
            assert ds.PatientName == original.PatientName
            assert ds.PixelData == original.PixelData


def _c_get(
    server: Running,
    identifier: Dataset,
    roles: list[str],
    syntaxes: tuple[str, ...] | list[str] = (EXPLICIT, IMPLICIT),
) -> tuple[list[Any], dict[str, bytes]]:
    """A C-GET with pynetdicom as SCU taking the SCP role for ``roles``: the responses, and
    the raw data set bytes received by SOP Instance UID."""
    received: dict[str, bytes] = {}

    def on_store(event: Any) -> int:
        received[str(event.request.AffectedSOPInstanceUID)] = received_data_set(event)
        return 0x0000

    ae = AE(ae_title=calling_ae())
    ae.add_requested_context(STUDY_GET)
    for uid in roles:
        ae.add_requested_context(uid, list(syntaxes))
    assoc = ae.associate(
        "127.0.0.1",
        server.port,
        ae_title="LIGHTBOX",
        ext_neg=[build_role(uid, scp_role=True) for uid in roles],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    try:
        statuses = [status for status, _ in assoc.send_c_get(identifier, STUDY_GET)]
    finally:
        assoc.release()
    return statuses, received


def test_get_without_a_context_for_a_sop_class(mover: Running) -> None:
    """C-GET whose requestor negotiated CT only: the secondary capture has no context, a
    failed sub-operation; the CT images arrive (0xB000)."""
    study = Study(count=2)
    ingest(mover, *study.files.values())
    statuses, received = _c_get(mover, _study(study.uid), [CTImageStorage])
    final = statuses[-1]
    assert final.Status == 0xB000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 1)
    assert set(received) == set(study.files) - {study.jpeg_uid}


def test_an_instance_sent_by_stow_comes_back_by_c_get_byte_identical(mover: Running) -> None:
    """Cross-protocol: STOW-RS in, C-GET out, the data set bytes as they were sent."""
    study = Study(count=1)
    [ct] = [raw for uid, raw in study.files.items() if uid != study.jpeg_uid]

    async def stow() -> int:
        app = create_app(mover.settings, services=mover.services)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post(
                "/dicom-web/studies",
                content=ct,
                headers={"Content-Type": "application/dicom"},
            )
        return response.status_code

    assert mover.run(stow()) == 200
    statuses, received = _c_get(
        mover, _study(study.uid), [CTImageStorage, SecondaryCaptureImageStorage]
    )
    assert statuses[-1].Status == 0x0000
    assert list(received.values()) == [dataset_bytes(ct)]


def test_move_over_tls(database_url: str, tmp_path: Path) -> None:
    """A C-MOVE asked over TLS to a destination marked ``tls``: the sub-operations go over TLS
    too, Lightbox presenting its certificate and checking the destination's (PS3.15 B.1)."""
    from tests.dimse.certs import Authority

    ca = Authority.create(tmp_path / "pki")
    ours, peer = ca.issue(tmp_path / "pki", "lightbox"), ca.issue(tmp_path / "pki", "peer")
    port = free_port()
    settings = qr_settings(
        database_url,
        tmp_path / "data",
        tls_cert=ours.cert,
        tls_key=ours.key,
        tls_ca=ca.pair.cert,
        remote_aes=[RemoteAeSettings(ae_title="SECURE", host="127.0.0.1", port=port, tls=True)],
    )
    study = Study(count=1)
    tls = ["+tls", str(peer.key), str(peer.cert), "+cf", str(ca.pair.cert)]
    client = ssl.create_default_context(cafile=str(ca.pair.cert))
    client.check_hostname = False
    client.load_cert_chain(peer.cert, peer.key)  # movescu has no TLS: pynetdicom asks
    with running(settings) as server:
        ingest(server, *study.files.values())
        with storescp(tmp_path / "in", "SECURE", "+B", "+xa", *tls, port=port) as scp:
            ae = AE(ae_title=calling_ae())
            ae.add_requested_context(STUDY_MOVE)
            assoc = ae.associate(
                "127.0.0.1", server.port, ae_title="LIGHTBOX", tls_args=(client, "127.0.0.1")
            )
            assert assoc.is_established
            try:
                statuses = [
                    s for s, _ in assoc.send_c_move(_study(study.uid), "SECURE", STUDY_MOVE)
                ]
            finally:
                assoc.release()
            received = scp.received()
    assert statuses[-1].Status == 0x0000
    assert statuses[-1].NumberOfCompletedSuboperations == len(study.files)
    assert len(received) == len(study.files)

"""Storage Commitment Push Model SCP (DIMSE-06) with pynetdicom as the modality: the report on
the same association, or on a new one when the modality has released it; failures listed with
their reasons; malformed requests refused; each commitment audited."""

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt

from app.config import RemoteAeSettings
from app.services.commitment import FailureReason
from tests.dimse.conftest import (
    CT,
    Running,
    calling_ae,
    ct_association,
    dimse_port,
    dimse_settings,
    running,
    send_file,
)
from tests.factories import make_dataset, to_bytes

COMMITMENT = "1.2.840.10008.1.20.1"
WELL_KNOWN = "1.2.840.10008.1.20.1.1"


def _stored(server: Running, tmp_path: Path, count: int) -> list[str]:
    """``count`` CT instances C-STOREd; their SOP Instance UIDs."""
    uids = []
    with ct_association(server.port) as assoc:
        for i in range(count):
            ds = make_dataset(PatientID="COMMIT")
            path = tmp_path / f"{i}.dcm"
            path.write_bytes(to_bytes(ds))
            assert send_file(assoc, path) == 0
            uids.append(str(ds.SOPInstanceUID))
    return uids


def _request(uids: list[tuple[str, str]], transaction: str) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction
    items = []
    for sop_class, sop in uids:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


Report = tuple[int, Dataset]


def _eventually_rows(server: Running, title: str) -> list[dict[str, Any]]:
    """The commitment audit rows of ``title``, waiting (up to 30 s) for the first: the server
    audits a commitment once its report has been answered."""
    deadline = time.monotonic() + 30
    while not (rows := server.audit_rows(title, "commitment")) and time.monotonic() < deadline:
        time.sleep(0.05)
    return rows


def _on_report(reports: "queue.Queue[Report]") -> Any:
    def handler(event: Any) -> tuple[int, None]:
        reports.put((int(event.request.EventTypeID), event.event_information))
        return 0x0000, None

    return handler


def test_commitment_reported_on_the_same_association(dimse: Running, tmp_path: Path) -> None:
    uids = _stored(dimse, tmp_path, 3)
    title = calling_ae()
    reports: queue.Queue[Report] = queue.Queue()
    ae = AE(ae_title=title)
    ae.add_requested_context(COMMITMENT)
    assoc = ae.associate(
        "127.0.0.1",
        dimse.port,
        ae_title="LIGHTBOX",
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, _on_report(reports))],
    )
    transaction = generate_uid()
    try:
        status, _ = assoc.send_n_action(
            _request([(CT, u) for u in uids], transaction), 1, COMMITMENT, WELL_KNOWN
        )
        assert status.Status == 0x0000
        event_type, report = reports.get(timeout=30)
        # The handler has returned, but its N-EVENT-REPORT response goes out on pynetdicom's
        # reactor thread after it: a release sent before that makes the report look lost to
        # the server (CI saw it). A modality releases once it has answered, so wait for that.
        [row] = _eventually_rows(dimse, title)
    finally:
        assoc.release()
    assert event_type == 1  # all committed
    assert report.TransactionUID == transaction
    assert sorted(i.ReferencedSOPInstanceUID for i in report.ReferencedSOPSequence) == sorted(uids)
    assert "FailedSOPSequence" not in report
    assert row["outcome"] == "success"
    assert row["patient_id"] == "COMMIT"
    assert "3 committed, 0 failed; reported on the same association" in row["detail"]


@pytest.fixture
def modality_port() -> int:
    return dimse_port()


@pytest.fixture
def with_modality(
    database_url: str, tmp_path: Path, modality_port: int
) -> Iterator[tuple[Running, str]]:
    title = calling_ae()
    settings = dimse_settings(
        database_url,
        tmp_path / "data",
        remote_aes=[RemoteAeSettings(ae_title=title, host="127.0.0.1", port=modality_port)],
    )
    with running(settings) as server:
        yield server, title


def test_commitment_reported_on_a_new_association_with_failures(
    with_modality: tuple[Running, str], modality_port: int, tmp_path: Path
) -> None:
    """The modality releases after the N-ACTION and listens for the report: it comes on an
    association of ours (SCP role proposed), Event Type 2, each failure with its reason."""
    server, title = with_modality
    [held] = _stored(server, tmp_path, 1)
    unknown = generate_uid()
    reports: queue.Queue[Report] = queue.Queue()
    modality = AE(ae_title=title)
    modality.add_supported_context(COMMITMENT, scu_role=True, scp_role=True)
    listener = modality.start_server(
        ("127.0.0.1", modality_port),
        block=False,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, _on_report(reports))],
    )
    assert listener is not None
    try:
        modality.add_requested_context(COMMITMENT)
        assoc = modality.associate("127.0.0.1", server.port, ae_title="LIGHTBOX")
        transaction = generate_uid()
        request = _request(
            [(CT, held), (CT, unknown), ("1.2.840.10008.5.1.4.1.1.4", held)], transaction
        )
        status, _ = assoc.send_n_action(request, 1, COMMITMENT, WELL_KNOWN)
        assoc.release()  # as many modalities do: the report is to come on a new association
        assert status.Status == 0x0000
        event_type, report = reports.get(timeout=30)
        rows = _eventually_rows(server, title)  # the report answered (see the test above)
    finally:
        listener.shutdown()
    assert event_type == 2
    assert report.TransactionUID == transaction
    assert [i.ReferencedSOPInstanceUID for i in report.ReferencedSOPSequence] == [held]
    failures = {
        (i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID): i.FailureReason
        for i in report.FailedSOPSequence
    }
    assert failures == {
        (CT, unknown): FailureReason.NO_SUCH_OBJECT_INSTANCE,
        ("1.2.840.10008.5.1.4.1.1.4", held): FailureReason.CLASS_INSTANCE_CONFLICT,
    }
    assert rows[-1]["outcome"] == "failure"
    assert "1 committed, 2 failed; reported on a new association" in rows[-1]["detail"]


def test_a_report_to_an_unknown_ae_is_audited_as_undelivered(
    dimse: Running, tmp_path: Path
) -> None:
    [held] = _stored(dimse, tmp_path, 1)
    title = calling_ae()  # not among the remote AEs: nowhere to send the report
    ae = AE(ae_title=title)
    ae.add_requested_context(COMMITMENT)
    assoc = ae.associate("127.0.0.1", dimse.port, ae_title="LIGHTBOX")
    status, _ = assoc.send_n_action(
        _request([(CT, held)], generate_uid()), 1, COMMITMENT, WELL_KNOWN
    )
    assoc.release()
    assert status.Status == 0x0000
    rows = _eventually_rows(dimse, title)
    assert rows[-1]["outcome"] == "failure"
    assert "could not be delivered" in rows[-1]["detail"]


@pytest.mark.parametrize(
    ("action_type", "instance", "information", "expected"),
    [
        (2, WELL_KNOWN, "ok", 0x0123),  # no such action
        (1, "1.2.3.4", "ok", 0x0112),  # not the well-known instance
        (1, WELL_KNOWN, "no-sequence", 0x0120),
        (1, WELL_KNOWN, "bad-transaction", 0x0115),
    ],
)
def test_malformed_commitment_requests_are_refused(
    dimse: Running, action_type: int, instance: str, information: str, expected: int
) -> None:
    ds = _request([(CT, generate_uid())], generate_uid())
    if information == "no-sequence":
        del ds.ReferencedSOPSequence
    elif information == "bad-transaction":
        ds.TransactionUID = "1.2.x"
    title = calling_ae()
    ae = AE(ae_title=title)
    ae.add_requested_context(COMMITMENT)
    assoc = ae.associate("127.0.0.1", dimse.port, ae_title="LIGHTBOX")
    try:
        status, _ = assoc.send_n_action(ds, action_type, COMMITMENT, instance)
    finally:
        assoc.release()
    assert status.Status == expected
    [row] = dimse.audit_rows(title, "commitment")
    assert row["outcome"] == "failure"

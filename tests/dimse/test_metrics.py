"""The DIMSE front end in the metrics (issue 23 point 4): associations by outcome, operations by
status category with their durations (C-STORE, C-FIND, C-MOVE), C-STORE instances and bytes
(PostgreSQL and SQLite)."""

import io
import time

from prometheus_client import REGISTRY
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid

from tests.dimse.conftest import STUDY_FIND, STUDY_MOVE, Running, association, ct_association
from tests.factories import make_instance


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _wait_for(name: str, at_least: float, **labels: str) -> None:
    """pynetdicom runs the release and abort events after the SCU returns."""
    deadline = time.monotonic() + 10
    while _value(name, **labels) < at_least:
        assert time.monotonic() < deadline, f"{name} {labels} stayed below {at_least}"
        time.sleep(0.05)


def test_associations_operations_and_stores_are_counted(dimse: Running) -> None:
    accepted = _value("lightbox_dimse_associations_total", outcome="accepted")
    released = _value("lightbox_dimse_associations_total", outcome="released")
    aborted = _value("lightbox_dimse_associations_total", outcome="aborted")
    stores = _value("lightbox_dimse_operations_total", operation="C-STORE", status="success")
    refusals = _value("lightbox_dimse_operations_total", operation="C-STORE", status="failure")
    timed = _value("lightbox_dimse_operation_duration_seconds_count", operation="C-STORE")
    instances = _value("lightbox_ingest_instances_total", protocol="cstore")
    size = _value("lightbox_ingest_bytes_total", protocol="cstore")
    duplicates = _value(
        "lightbox_ingest_failures_total", protocol="cstore", reason="duplicate_instance"
    )

    raw = make_instance(SOPInstanceUID=generate_uid())
    ds = dcmread(io.BytesIO(raw))
    with ct_association(dimse.port) as assoc:
        assert int(assoc.send_c_store(ds).Status) == 0x0000
        ds.PatientID = "another object, same SOP Instance UID"
        assert int(assoc.send_c_store(ds).Status) == 0x0111
    with ct_association(dimse.port) as assoc:
        assoc.abort()

    _wait_for("lightbox_dimse_associations_total", released + 1, outcome="released")
    _wait_for("lightbox_dimse_associations_total", aborted + 1, outcome="aborted")
    assert _value("lightbox_dimse_associations_total", outcome="accepted") == accepted + 2
    counted = _value("lightbox_dimse_operations_total", operation="C-STORE", status="success")
    assert counted == stores + 1
    failed = _value("lightbox_dimse_operations_total", operation="C-STORE", status="failure")
    assert failed == refusals + 1
    timings = _value("lightbox_dimse_operation_duration_seconds_count", operation="C-STORE")
    assert timings == timed + 2
    assert _value("lightbox_ingest_instances_total", protocol="cstore") == instances + 1
    assert _value("lightbox_ingest_bytes_total", protocol="cstore") > size
    assert (
        _value("lightbox_ingest_failures_total", protocol="cstore", reason="duplicate_instance")
        == duplicates + 1
    )


def test_searches_and_retrieves_are_counted(dimse: Running) -> None:
    """C-FIND is counted on both paths (an association of its own: the loop's; with a C-MOVE
    context: pynetdicom's), and a refused C-MOVE as a failure."""
    ops = "lightbox_dimse_operations_total"
    finds = _value(ops, operation="C-FIND", status="success")
    timed = _value("lightbox_dimse_operation_duration_seconds_count", operation="C-FIND")
    moves = _value(ops, operation="C-MOVE", status="failure")
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = "NOBODY"
    for also in ((), (STUDY_MOVE,)):
        with association(dimse.port, STUDY_FIND, *also) as assoc:
            [(final, _)] = list(assoc.send_c_find(query, STUDY_FIND))
            assert final.Status == 0x0000
            if also:  # to a destination nobody configured: 0xA801
                move = Dataset()
                move.QueryRetrieveLevel = "STUDY"
                move.StudyInstanceUID = generate_uid()
                [(refused, _)] = list(assoc.send_c_move(move, "NOWHERE", STUDY_MOVE))
                assert refused.Status == 0xA801
    assert _value(ops, operation="C-FIND", status="success") == finds + 2
    assert _value("lightbox_dimse_operation_duration_seconds_count", operation="C-FIND") == (
        timed + 2
    )
    assert _value(ops, operation="C-MOVE", status="failure") == moves + 1

"""C-FIND SCP (DIMSE-07..10) against real peers: DCMTK findscu at every level of both roots, with
wildcard, range, list and sequence keys and non-Latin character sets; pynetdicom for what findscu
cannot script (C-CANCEL mid-C-FIND) and for the exact failure statuses. PostgreSQL and SQLite."""

import socket
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.datadict import dictionary_has_tag, dictionary_is_retired, dictionary_VR
from pydicom.filereader import read_dataset
from pydicom.uid import generate_uid

from app.dimse.loop_association import MAX_IDENTIFIER_BYTES
from tests.dimse.conftest import (
    STUDY_FIND,
    STUDY_MOVE,
    Running,
    association,
    calling_ae,
    ingest,
    qr_settings,
    running,
)
from tests.dimse.qr_peers import findscu
from tests.dimse.raw import (
    A_ABORT,
    A_RELEASE_RQ,
    RawPeer,
    associate_rq,
    c_cancel_command,
    c_find_command,
    command_set,
    implicit_le,
    p_data,
    read_message,
    read_pdu,
)
from tests.factories import make_dataset, make_instance, to_bytes

PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
JAPANESE = "Yamada^Tarou=山田^太郎=やまだ^たろう"


class Archive:
    """Three patients' studies, with what the queries below look for."""

    def __init__(self) -> None:
        self.study1, self.study2, self.study3 = (str(generate_uid()) for _ in range(3))
        self.series_ct, self.series_mr = str(generate_uid()), str(generate_uid())
        self.series2, self.series3 = str(generate_uid()), str(generate_uid())
        self.ct_sops = [str(generate_uid()) for _ in range(2)]

    def files(self) -> list[bytes]:
        request = Dataset()
        request.RequestedProcedureID = "RP-7"
        request.ScheduledProcedureStepID = "SPS-7"
        doe = {"PatientName": "Doe^Jane", "PatientID": "P1", "StudyInstanceUID": self.study1}
        doe |= {"StudyDate": "20240131", "AccessionNumber": "ACC-1"}
        out = [
            make_instance(
                **doe,
                SeriesInstanceUID=self.series_ct,
                SOPInstanceUID=sop,
                InstanceNumber=n,
                RequestAttributesSequence=[request],
            )
            for n, sop in enumerate(self.ct_sops, 1)
        ]
        out.append(
            make_instance(**doe, SeriesInstanceUID=self.series_mr, Modality="MR", SeriesNumber=2)
        )
        out.append(
            make_instance(
                PatientName="Müller^Jürgen",
                PatientID="P2",
                StudyInstanceUID=self.study2,
                SeriesInstanceUID=self.series2,
                StudyDate="20230615",
                AccessionNumber="ACC-2",
                Modality="MR",
            )
        )
        out.append(
            make_instance(
                SpecificCharacterSet=["", "ISO 2022 IR 87"],
                PatientName=JAPANESE,
                PatientID="P3",
                StudyInstanceUID=self.study3,
                SeriesInstanceUID=self.series3,
                StudyDate="20220101",
                AccessionNumber="ACC-3",
            )
        )
        return out


@pytest.fixture
def archive(qr: Running) -> Archive:
    archive = Archive()
    ingest(qr, *archive.files())
    return archive


def _values(run: Any, keyword: str) -> list[str]:
    assert run.returncode == 0, run.log
    return sorted(str(ds.get(keyword, "")) for ds in run.datasets())


def test_findscu_every_level_of_both_roots(qr: Running, archive: Archive, tmp_path: Path) -> None:
    """Wildcards, ranges, UID lists and sequence keys at each level of Patient Root and Study
    Root, as DCMTK's findscu sends them; every match carries our AE and ONLINE."""
    title = calling_ae()

    def patient_root(name: str, *keys: str) -> Any:
        return findscu(qr.port, tmp_path / name, *keys, root="-P", calling=title)

    def study_root(name: str, *keys: str) -> Any:
        return findscu(qr.port, tmp_path / name, *keys, root="-S", calling=title)

    # Patient Root, PATIENT: a wildcard on the name, the patients' counts
    run = patient_root(
        "p1", "QueryRetrieveLevel=PATIENT", "PatientName=*E*", "PatientID",
        "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedInstances",
    )  # fmt: skip
    assert _values(run, "PatientID") == ["P1", "P2"]  # DOE, MÜLLER (case-insensitive, PN)
    doe = next(ds for ds in run.datasets() if ds.PatientID == "P1")
    assert (doe.NumberOfPatientRelatedStudies, doe.NumberOfPatientRelatedInstances) == (1, 3)
    assert {(ds.RetrieveAETitle, ds.InstanceAvailability) for ds in run.datasets()} == {
        ("LIGHTBOX", "ONLINE")
    }

    # Patient Root, STUDY under a patient: a date range
    run = patient_root(
        "p2", "QueryRetrieveLevel=STUDY", "PatientID=P1", "StudyDate=20240101-20241231",
        "StudyInstanceUID", "ModalitiesInStudy",
    )  # fmt: skip
    assert _values(run, "StudyInstanceUID") == [archive.study1]
    assert list(run.datasets()[0].ModalitiesInStudy) == ["CT", "MR"]

    # Patient Root, SERIES: a sequence key matched, the other series of the study left out
    run = patient_root(
        "p3", "QueryRetrieveLevel=SERIES", "PatientID=P1", f"StudyInstanceUID={archive.study1}",
        "SeriesInstanceUID", "Modality", "RequestAttributesSequence[0].RequestedProcedureID=RP-7",
    )  # fmt: skip
    assert _values(run, "SeriesInstanceUID") == [archive.series_ct]
    [series] = run.datasets()
    assert series.RequestAttributesSequence[0].RequestedProcedureID == "RP-7"
    assert "ScheduledProcedureStepID" not in series.RequestAttributesSequence[0]

    # Patient Root, IMAGE: a list of SOP Instance UIDs
    run = patient_root(
        "p4", "QueryRetrieveLevel=IMAGE", "PatientID=P1", f"StudyInstanceUID={archive.study1}",
        f"SeriesInstanceUID={archive.series_ct}",
        f"SOPInstanceUID={archive.ct_sops[1]}\\{generate_uid()}", "InstanceNumber",
    )  # fmt: skip
    assert _values(run, "SOPInstanceUID") == [archive.ct_sops[1]]
    assert run.datasets()[0].InstanceNumber == 2

    # Study Root, STUDY: patient keys at the study level, an open range, a list of accessions
    run = study_root(
        "s1", "QueryRetrieveLevel=STUDY", "StudyDate=-20231231", "AccessionNumber=ACC-2\\ACC-3",
        "PatientName", "StudyInstanceUID",
    )  # fmt: skip
    assert _values(run, "StudyInstanceUID") == sorted([archive.study2, archive.study3])

    # Study Root, SERIES: a wildcard on the modality
    run = study_root(
        "s2", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={archive.study1}", "Modality=M?",
        "SeriesNumber",
    )  # fmt: skip
    assert _values(run, "SeriesInstanceUID") == [archive.series_mr]
    assert run.datasets()[0].SeriesNumber == 2

    # Study Root, IMAGE: universal matching, keys of the levels above returned
    run = study_root(
        "s3", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={archive.study1}",
        f"SeriesInstanceUID={archive.series_ct}", "SOPInstanceUID", "StudyDate",
    )  # fmt: skip
    assert _values(run, "SOPInstanceUID") == sorted(archive.ct_sops)
    assert {ds.StudyDate for ds in run.datasets()} == {"20240131"}

    rows = qr.audit_rows(title, "search")
    assert len(rows) == 7
    assert {row["source"] for row in rows} == {"127.0.0.1"}
    assert any(row["patient_id"] == "P1" and row["count"] == 1 for row in rows)


def test_non_latin_character_sets(qr: Running, archive: Archive, tmp_path: Path) -> None:
    """A query in ISO 2022 IR 87 (Japanese, code extensions) is decoded and answered in it; a
    name the request's character set cannot hold comes back in ISO_IR 192."""
    query = Dataset()
    query.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    query.QueryRetrieveLevel = "STUDY"
    query.PatientName = "*山田*"
    query.StudyInstanceUID = ""
    query_file = tmp_path / "query.dcm"
    query.save_as(query_file, implicit_vr=False, little_endian=True)
    title = calling_ae()
    run = findscu(qr.port, tmp_path / "jp", root="-S", query_file=query_file, calling=title)
    assert run.returncode == 0, run.log
    [match] = run.datasets()
    assert match.StudyInstanceUID == archive.study3
    assert list(match.SpecificCharacterSet) == ["", "ISO 2022 IR 87"]
    assert str(match.PatientName) == JAPANESE
    # the bytes on the wire are ISO 2022 (JIS X 0208 after ESC $ B), not UTF-8
    raw = run.files[0].read_bytes()
    assert b"\x1b$B" in raw
    assert "山".encode() not in raw

    # Latin-1 asked for: the German name in Latin-1, the Japanese one in UTF-8
    run = findscu(
        qr.port, tmp_path / "latin", "SpecificCharacterSet=ISO_IR 100",
        "QueryRetrieveLevel=STUDY", "StudyDate=-20231231", "PatientName", calling=title,
    )  # fmt: skip
    assert run.returncode == 0, run.log
    by_name = {str(ds.PatientName): ds.SpecificCharacterSet for ds in run.datasets()}
    assert by_name == {"Müller^Jürgen": "ISO_IR 100", JAPANESE: "ISO_IR 192"}


def _find(
    node: Running,
    identifier: Dataset,
    model: str = STUDY_FIND,
    title: str = "PYSCU",
    also: tuple[str, ...] = (),
) -> list[tuple[Any, Any]]:
    with association(node.port, model, *also, calling=title) as assoc:
        return list(assoc.send_c_find(identifier, model))


def _identifier(**keys: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


#: identifiers that cannot be answered: (model, keys, status, what the ErrorComment says)
BAD_IDENTIFIERS: list[tuple[str, dict[str, Any], int, str]] = [
    (STUDY_FIND, {"QueryRetrieveLevel": "PATIENT"}, 0xA900, "not a Study Root level"),
    (STUDY_FIND, {"QueryRetrieveLevel": "FRAME"}, 0xA900, "not a Study Root level"),
    (STUDY_FIND, {"PatientName": "*"}, 0xA900, "QueryRetrieveLevel (0008,0052) missing"),
    (
        PATIENT_FIND,
        {"QueryRetrieveLevel": "STUDY", "PatientID": "P1", "Modality": "CT"},
        0xA900,
        "Modality is of the SERIES level",
    ),
    (
        STUDY_FIND,
        {"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": ""},
        0xA900,
        "StudyInstanceUID: one value needed",
    ),
    (
        PATIENT_FIND,
        {"QueryRetrieveLevel": "STUDY", "PatientID": "P*"},
        0xA900,
        "PatientID: one value needed",
    ),
    (
        STUDY_FIND,
        {"QueryRetrieveLevel": "STUDY", "StudyDate": "20241301"},
        0xC000,
        "StudyDate: invalid date",
    ),
]


def test_identifier_errors(qr: Running, find_path: tuple[str, ...]) -> None:
    """An invalid QueryRetrieveLevel, a key at the wrong level, a missing unique key above, an
    invalid value: one failure response with its status and an ErrorComment saying why."""
    title = calling_ae()
    for model, keys, status, comment in BAD_IDENTIFIERS:
        [(response, identifier)] = _find(qr, _identifier(**keys), model, title, find_path)
        assert (response.Status, identifier) == (status, None), keys
        assert comment in response.ErrorComment
    rows = qr.audit_rows(title, "search")
    assert [(r["outcome"], r["status"]) for r in rows] == [
        ("failure", status) for *_, status, _ in BAD_IDENTIFIERS
    ]


def test_unsupported_optional_keys_give_ff01(
    qr: Running, archive: Archive, find_path: tuple[str, ...]
) -> None:
    """A key Lightbox cannot match on is ignored and a key it cannot return comes back empty;
    the matches say so with 0xFF01."""
    ds = _identifier(QueryRetrieveLevel="STUDY", PatientID="P2", OtherPatientIDs="X*")
    ds.SOPClassesInStudy = ""
    responses = _find(qr, ds, also=find_path)
    assert [r.Status for r, _ in responses] == [0xFF01, 0x0000]
    match = responses[0][1]
    assert match.StudyInstanceUID == archive.study2
    assert match.SOPClassesInStudy is None or match.SOPClassesInStudy == ""


def test_matches_larger_than_the_peers_pdu_are_fragmented(
    qr: Running, find_path: tuple[str, ...]
) -> None:
    """Pending responses normally go out as one PDU each (command and identifier together); a
    peer whose maximum PDU is smaller than that gets them fragmented, and every match whole."""
    study = str(generate_uid())
    description = "D" * 600  # with the command set, more than the peer's 512-byte PDUs
    ingest(
        qr,
        *(
            to_bytes(make_dataset(StudyInstanceUID=study, SeriesInstanceUID=str(generate_uid()),
                                  SeriesDescription=f"{n}{description}", SeriesNumber=n))
            for n in range(3)
        ),
        to_bytes(make_dataset(StudyInstanceUID=study, SeriesInstanceUID=str(generate_uid()),
                              SeriesDescription="short", SeriesNumber=9)),
    )  # fmt: skip
    identifier = _identifier(
        QueryRetrieveLevel="SERIES", StudyInstanceUID=study, SeriesInstanceUID="",
        SeriesDescription="", SeriesNumber="",
    )  # fmt: skip
    with association(qr.port, STUDY_FIND, *find_path, max_pdu=512) as assoc:
        responses = list(assoc.send_c_find(identifier, STUDY_FIND))
    assert [status.Status for status, _ in responses] == [0xFF00] * 4 + [0x0000]
    matches = [match for _, match in responses[:-1] if match is not None]
    found = {int(match.SeriesNumber): str(match.SeriesDescription) for match in matches}
    assert found == {n: f"{n}{description}" for n in range(3)} | {9: "short"}


def _series_of(qr: Running, count: int) -> tuple[str, str]:
    """A study with one series of ``count`` instances, stored: its UIDs."""
    study, series = str(generate_uid()), str(generate_uid())
    ingest(
        qr,
        *(
            to_bytes(make_dataset(StudyInstanceUID=study, SeriesInstanceUID=series,
                                  InstanceNumber=n))
            for n in range(count)
        ),
    )  # fmt: skip
    return study, series


def test_cancel_mid_find(qr: Running) -> None:
    """C-CANCEL while matches are being sent (pynetdicom's path: a C-MOVE context proposed
    too): the SCP stops and answers Cancel (0xFE00). The loop's path is fast enough to have
    sent every match before pynetdicom's client reacts to the first, so its C-CANCEL is tested
    with a peer of our own below."""
    count = 150
    study, series = _series_of(qr, count)
    title = calling_ae()
    identifier = _identifier(
        QueryRetrieveLevel="IMAGE", StudyInstanceUID=study, SeriesInstanceUID=series,
        SOPInstanceUID="",
    )  # fmt: skip
    statuses = []
    with association(qr.port, STUDY_FIND, STUDY_MOVE, calling=title) as assoc:
        for n, (status, _) in enumerate(assoc.send_c_find(identifier, STUDY_FIND, msg_id=7)):
            statuses.append(status.Status)
            if n == 0:
                assoc.send_c_cancel(7, assoc.accepted_contexts[0].context_id)
    assert statuses[-1] == 0xFE00
    assert 1 <= len(statuses) - 1 < count
    assert set(statuses[:-1]) == {0xFF00}
    [row] = qr.audit_rows(title, "search")
    assert (row["status"], row["count"]) == (0xFE00, len(statuses) - 1)


# --- the loop's path (app.dimse.loop_find), with a peer written by hand ---

IMPLICIT = "1.2.840.10008.1.2"
VERIFICATION = "1.2.840.10008.1.1"


def _image_query(study: str, series: str) -> bytes:
    return implicit_le(
        _identifier(
            QueryRetrieveLevel="IMAGE", StudyInstanceUID=study, SeriesInstanceUID=series,
            SOPInstanceUID="", InstanceNumber="",
        )
    )  # fmt: skip


def _responses(peer: RawPeer) -> list[tuple[Dataset, bytes | None]]:
    """The responses to one C-FIND, up to and including the final one."""
    out = []
    while True:
        command, data = read_message(peer)
        out.append((command, data))
        if command.Status not in (0xFF00, 0xFF01):
            return out


def _send_search(peer: RawPeer, message_id: int, study: str, series: str, then: bytes) -> None:
    """A C-FIND-RQ for the series' instances and its identifier, ``then`` right behind."""
    peer.send(
        p_data(c_find_command(STUDY_FIND, message_id), command=True, last=True)
        + p_data(_image_query(study, series), command=False, last=True)
        + then
    )


def test_cancel_sent_with_the_request_on_the_loop(qr: Running) -> None:
    """A C-CANCEL-RQ right behind its C-FIND-RQ: the search stops before it has sent every
    match and answers Cancel (0xFE00); the audit row counts what was sent."""
    count = 150
    study, series = _series_of(qr, count)
    title = calling_ae()
    peer = RawPeer.connect(qr.port, title, STUDY_FIND, IMPLICIT)
    try:
        _send_search(peer, 9, study, series, p_data(c_cancel_command(9), command=True, last=True))
        responses = _responses(peer)
        peer.send(A_RELEASE_RQ)
        assert peer.receive()[0] == 0x06
    finally:
        peer.close()
    *pending, (final, _) = responses
    assert (final.Status, final.MessageIDBeingRespondedTo) == (0xFE00, 9)
    assert len(pending) < count
    assert all(c.Status == 0xFF00 and d for c, d in pending)
    [row] = qr.audit_rows(title, "search")
    assert (row["status"], row["count"]) == (0xFE00, len(pending))


def test_cancel_of_another_message_is_ignored_and_later_requests_wait(qr: Running) -> None:
    """A C-CANCEL-RQ naming no request in progress changes nothing; a C-ECHO-RQ and an
    A-RELEASE-RQ sent while matches stream are answered after the C-FIND's final response."""
    count = 40
    study, series = _series_of(qr, count)
    peer = RawPeer.connect(qr.port, calling_ae(), STUDY_FIND, IMPLICIT, also=(VERIFICATION,))
    echo = command_set(
        AffectedSOPClassUID=VERIFICATION, CommandField=0x0030, MessageID=6,
        CommandDataSetType=0x0101,
    )  # fmt: skip
    try:
        then = p_data(c_cancel_command(4), command=True, last=True)
        then += p_data(echo, command=True, last=True, context_id=3) + A_RELEASE_RQ
        _send_search(peer, 3, study, series, then)
        responses = _responses(peer)
        echoed, _ = read_message(peer)
        assert peer.receive()[0] == 0x06  # A-RELEASE-RP, after both
    finally:
        peer.close()
    *pending, (final, _) = responses
    assert (final.Status, final.MessageIDBeingRespondedTo) == (0x0000, 3)
    numbers = sorted(int(read_dataset(BytesIO(d or b""), True, True).InstanceNumber)
                     for _, d in pending)  # fmt: skip
    assert numbers == list(range(count))
    assert (echoed.CommandField, echoed.MessageIDBeingRespondedTo, echoed.Status) == (
        0x8030,
        6,
        0x0000,
    )


def test_truncated_identifier_on_the_loop(qr: Running) -> None:
    """An identifier whose only element's length points past its end: pydicom's reader stops
    there, so the identifier has no QueryRetrieveLevel; a failure response saying so, and the
    association goes on."""
    title = calling_ae()
    peer = RawPeer.connect(qr.port, title, STUDY_FIND, IMPLICIT)
    try:
        peer.send(
            p_data(c_find_command(STUDY_FIND, 1), command=True, last=True)
            + p_data(b"\x08\x00\x52\x00\xff\xff\xff\x7f", command=False, last=True)
        )
        [(final, data)] = _responses(peer)
        assert data is None
        assert final.Status == 0xA900
        assert "QueryRetrieveLevel (0008,0052) missing" in final.ErrorComment
        assert final.OffendingElement == 0x00080052
        peer.send(
            p_data(c_find_command(STUDY_FIND, 2), command=True, last=True)
            + p_data(implicit_le(_identifier(QueryRetrieveLevel="STUDY", PatientID="NOBODY")),
                     command=False, last=True)
        )  # fmt: skip
        [(final, _)] = _responses(peer)
        assert (final.Status, final.MessageIDBeingRespondedTo) == (0x0000, 2)
        peer.send(A_RELEASE_RQ)
        assert peer.receive()[0] == 0x06
    finally:
        peer.close()
    rows = qr.audit_rows(title, "search")
    assert [(r["outcome"], r["count"]) for r in rows] == [("failure", 0), ("success", 0)]


def test_an_identifier_past_the_bound_aborts_the_association(qr: Running) -> None:
    """A C-FIND identifier larger than MAX_IDENTIFIER_BYTES is not held: A-ABORT."""
    peer = RawPeer.connect(qr.port, calling_ae(), STUDY_FIND, IMPLICIT)
    try:
        peer.send(p_data(c_find_command(STUDY_FIND, 1), command=True, last=True))
        chunk = b"\0" * 16000
        for _ in range(MAX_IDENTIFIER_BYTES // len(chunk) + 1):
            peer.send(p_data(chunk, command=False, last=False))
        kind, _ = peer.receive()
        assert kind == 0x07  # A-ABORT
    finally:
        peer.close()


def test_an_abort_while_matches_stream_stops_the_search(qr: Running) -> None:
    """An A-ABORT right behind the C-FIND: the search stops, and its audit row says the
    association ended (a failure, with what was sent counted)."""
    count = 150
    study, series = _series_of(qr, count)
    title = calling_ae()
    peer = RawPeer.connect(qr.port, title, STUDY_FIND, IMPLICIT)
    try:
        _send_search(peer, 5, study, series, A_ABORT)
        deadline = time.monotonic() + 10
        while not (rows := qr.audit_rows(title, "search")):
            assert time.monotonic() < deadline, "no audit row of the search"
            time.sleep(0.05)
    finally:
        peer.close()
    [row] = rows
    assert (row["outcome"], row["status"]) == ("failure", 0xC000)
    assert row["detail"].endswith("; association ended")
    assert row["count"] < count


def test_a_peer_that_reads_no_response_is_aborted(database_url: str, tmp_path: Path) -> None:
    """A requestor that sends C-FINDs and reads nothing (its receive window tiny): once the
    responses fill the socket's buffers, the search waits ``network_timeout`` for the peer, then
    the association is aborted and the search audited as such; the listener serves others."""
    settings = qr_settings(database_url, tmp_path / "data", network_timeout=1.0)
    with running(settings) as server:
        study, series = _series_of(server, 40)
        title = calling_ae()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
        sock.settimeout(30)
        sock.connect(("127.0.0.1", server.port))
        try:
            sock.sendall(associate_rq(title, "LIGHTBOX", STUDY_FIND, IMPLICIT))
            assert read_pdu(sock)[0] == 0x02
            # 80 searches of 40 matches, each asking for 400 more keys (returned empty: ~3 kB a
            # match, ~10 MB in all, more than the kernel's socket buffers), none of it read
            wide = _identifier(QueryRetrieveLevel="IMAGE", StudyInstanceUID=study,
                               SeriesInstanceUID=series, SOPInstanceUID="")  # fmt: skip
            for tag in _empty_keys(400):
                wide.add_new(tag, dictionary_VR(tag), None)
            query = p_data(implicit_le(wide), command=False, last=True)
            for message_id in range(1, 81):
                sock.sendall(p_data(c_find_command(STUDY_FIND, message_id), command=True,
                                    last=True) + query)  # fmt: skip
            deadline = time.monotonic() + 20
            while not any(
                r["detail"].endswith("; peer not reading")
                for r in server.audit_rows(title, "search")
            ):
                assert time.monotonic() < deadline, "the stalled search was not given up"
                time.sleep(0.1)
        finally:
            sock.close()
        rows = server.audit_rows(title, "search")
        assert len(rows) < 80
        stalled = rows[-1]
        assert (stalled["outcome"], stalled["status"]) == ("failure", 0xC000)
        [(final, _)] = _find(server, _identifier(QueryRetrieveLevel="STUDY", PatientID="NOBODY"))
        assert final.Status == 0x0000


def _empty_keys(count: int) -> list[int]:
    """Public keys of group 0018 (acquisition), none retired, a sequence or binary."""
    tags = []
    for element in range(0x10000):
        tag = 0x00180000 | element
        if (
            dictionary_has_tag(tag)
            and not dictionary_is_retired(tag)
            and dictionary_VR(tag) not in ("SQ", "OB", "OW", "UN")
        ):
            tags.append(tag)
    return tags[:count]

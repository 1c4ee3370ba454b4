"""dicomweb-client ``search_for_*`` against a real server process (QIDO-27, TEST-02).

The server caps pages at 3 results (``LIGHTBOX_QIDO_MAX_RESULTS``), so ``get_remaining=True``
really pages: dicomweb-client asks again with a growing offset until a page comes back empty.
"""

import socket

import pytest
from pydicom.uid import generate_uid

from tests.e2e.server import DicomwebServer
from tests.factories import make_dataset


def _raw_get(server: DicomwebServer, target: bytes) -> tuple[int, bytes]:
    """A GET whose request target is sent byte for byte (raw UTF-8 included)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Authorization: Bearer " + server.token.encode() + b"\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.server_env(LIGHTBOX_QIDO_MAX_RESULTS="3", LIGHTBOX_QIDO_MAX_INSTANCE_RESULTS="4")
def test_search_with_dicomweb_client(dicomweb_server: DicomwebServer) -> None:
    studies = [generate_uid() for _ in range(7)]
    series = [generate_uid() for _ in range(7)]
    datasets = [
        make_dataset(
            StudyInstanceUID=studies[i],
            SeriesInstanceUID=series[i],
            PatientID=f"P{i}",
            PatientName="Müller^Jürgen" if i == 0 else f"Doe^Jane{i}",
            StudyDate=f"202401{i + 10:02d}",
            Modality="MR" if i % 2 else "CT",
            InstanceNumber=n,
        )
        for i in range(7)
        for n in range(1, 3)
    ]
    server = dicomweb_server
    client = server.client
    client.store_instances(datasets)

    first = client.search_for_studies()
    assert len(first) == 3
    found = client.search_for_studies(get_remaining=True)
    assert sorted(s["0020000D"]["Value"][0] for s in found) == sorted(studies)
    # a stable order: the pages concatenate to StudyDate descending
    assert [s["0020000D"]["Value"][0] for s in found] == studies[::-1]

    mr = client.search_for_studies(search_filters={"ModalitiesInStudy": "MR"})
    assert len(mr) == 3
    named = client.search_for_studies(search_filters={"PatientName": "muller"}, fuzzymatching=True)
    assert [s["0020000D"]["Value"][0] for s in named] == [studies[0]]
    with_fields = client.search_for_studies(
        search_filters={"PatientID": "P2"}, fields=["StudyDescription"]
    )
    assert with_fields[0]["00081030"]["Value"] == ["CT HEAD"]

    in_study = client.search_for_series(study_instance_uid=studies[1])
    assert [s["0020000E"]["Value"][0] for s in in_study] == [series[1]]
    assert in_study[0]["00201209"]["Value"] == [2]
    all_series = client.search_for_series(get_remaining=True)
    assert len(all_series) == 7
    ct = client.search_for_series(search_filters={"Modality": "CT"}, get_remaining=True)
    assert len(ct) == 4

    instances = client.search_for_instances(get_remaining=True)
    assert len(instances) == 14
    assert len({i["00080018"]["Value"][0] for i in instances}) == 14
    one_series = client.search_for_instances(
        study_instance_uid=studies[3], series_instance_uid=series[3]
    )
    assert sorted(i["00200013"]["Value"][0] for i in one_series) == [1, 2]
    assert one_series[0]["00081190"]["Value"][0].startswith(
        f"{server.dicomweb}/studies/{studies[3]}/series/{series[3]}/instances/"
    )
    in_study_instances = client.search_for_instances(study_instance_uid=studies[4])
    assert len(in_study_instances) == 2

    # unescaped ^ * , in the request target work like percent-encoded ones
    status, body = _raw_get(
        dicomweb_server, b"/dicom-web/studies?PatientName=Doe^Jane*&PatientID=P1"
    )
    assert status == 200
    assert studies[1].encode() in body
    target = f"/dicom-web/studies?StudyInstanceUID={studies[2]},{studies[3]}".encode()
    status, body = _raw_get(server, target)
    assert status == 200
    assert body.count(b'"0020000D"') == 2
    status, body = _raw_get(
        dicomweb_server, b"/dicom-web/studies?PatientName=M%C3%BCller%5EJ%C3%BCrgen"
    )
    assert status == 200
    assert studies[0].encode() in body
    status, body = _raw_get(server, b"/dicom-web/studies?PatientName=%FF")
    assert status == 400
    assert b"PatientName" in body
    # raw (unencoded) UTF-8 breaks RFC 3986 and PS3.18 8.3.4.1 rule 5: the HTTP server
    # refuses the request line itself with a 400, never a 500
    status, _ = _raw_get(server, "/dicom-web/studies?PatientName=Müller^Jürgen".encode())
    assert status == 400

"""app/dimse/front_door.py: what reaches the port before any association exists. A request
trickled in pieces is still read; silent connections past the bound are closed at once; the
limit counts associations on both paths."""

import socket
import time
from pathlib import Path

from pynetdicom import AE

from tests.dimse.conftest import CT, EXPLICIT, calling_ae, dimse_settings, running
from tests.dimse.raw import associate_rq, read_pdu

VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


def test_a_request_trickled_in_pieces_is_read(database_url: str, tmp_path: Path) -> None:
    with running(dimse_settings(database_url, tmp_path / "data")) as server:
        request = associate_rq(calling_ae(), "LIGHTBOX", CT, EXPLICIT)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            for start in range(0, len(request), 40):  # 40 bytes at a time, 0.1 s apart
                sock.sendall(request[start : start + 40])
                time.sleep(0.1)
            kind, _ = read_pdu(sock)
            assert kind == 0x02  # A-ASSOCIATE-AC


def test_silent_connections_past_the_bound_are_closed_at_once(
    database_url: str, tmp_path: Path
) -> None:
    """With ``max_associations=1`` four connections may await their request; a fifth is
    closed without waiting for the ACSE timeout, and once they go, associations are served."""
    settings = dimse_settings(database_url, tmp_path / "data", max_associations=1)
    with running(settings) as server:
        silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
        try:
            time.sleep(0.5)  # accepted, each awaiting its request
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
                started = time.monotonic()
                assert extra.recv(1) == b""  # closed by the server
                assert time.monotonic() - started < 3
        finally:
            for sock in silent:
                sock.close()
        time.sleep(0.5)
        ae = AE(ae_title=calling_ae())
        ae.add_requested_context(VERIFICATION)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="LIGHTBOX")
        try:
            assert assoc.is_established
            assert int(assoc.send_c_echo().Status) == 0x0000
        finally:
            assoc.release()


def test_the_limit_counts_both_paths(database_url: str, tmp_path: Path) -> None:
    """An association pynetdicom serves (a C-MOVE context) holds the only slot: a
    storage association (the loop's) is rejected, local limit exceeded, and audited."""
    settings = dimse_settings(database_url, tmp_path / "data", max_associations=1)
    with running(settings) as server:
        query = AE(ae_title=calling_ae())
        query.add_requested_context(STUDY_ROOT_MOVE)
        held = query.associate("127.0.0.1", server.port, ae_title="LIGHTBOX")
        try:
            assert held.is_established
            title = calling_ae()
            storage = AE(ae_title=title)
            storage.add_requested_context(CT, [EXPLICIT])
            refused = storage.associate("127.0.0.1", server.port, ae_title="LIGHTBOX")
            assert refused.is_rejected
            [row] = server.audit_rows(title)
            assert row["outcome"] == "denied"
            assert "too many associations" in row["detail"]
        finally:
            held.release()

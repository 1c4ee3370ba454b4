"""app/dimse/sockets.py: Nagle's algorithm is off on the connections Lightbox accepts and on
those it opens (a C-FIND or a C-MOVE sub-operation otherwise waits out a delayed ACK)."""

import os
import socket
import time

from pynetdicom.association import Association

from app.dimse.requestor import associate
from app.services.aes import RemoteAe
from tests.dimse.conftest import Running

VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
IMPLICIT = "1.2.840.10008.1.2"


def _no_delay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def _socket_of(assoc: Association) -> socket.socket:
    transport = assoc.dul.socket
    assert transport is not None
    assert transport.socket is not None
    return transport.socket


def test_both_ends_of_an_association_send_without_delay(dimse: Running) -> None:
    ours = dimse.settings.dimse
    assoc = associate(
        ours.model_copy(update={"ae_title": "NODELAY"}),
        RemoteAe(ours.ae_title, "127.0.0.1", dimse.port),
        # with a C-MOVE context, pynetdicom serves the association (app.dimse.front_door)
        [(VERIFICATION, [IMPLICIT]), (STUDY_ROOT_MOVE, [IMPLICIT])],
    )
    assert assoc.is_established
    try:
        # the end we opened (a requestor: C-MOVE destinations, commitment reports, pull)
        assert _no_delay(_socket_of(assoc)) == 1
        # the end the listener accepted
        deadline = time.monotonic() + 5
        while not (accepted := dimse.server.ae.active_associations):
            assert time.monotonic() < deadline, "the listener shows no association"
            time.sleep(0.01)
        assert _no_delay(_socket_of(accepted[0])) == 1
        assert int(assoc.send_c_echo().Status) == 0x0000
    finally:
        assoc.release()


def test_the_loops_associations_send_without_delay(dimse: Running) -> None:
    """A Verification-only association is served on the services' loop (app.dimse.front_door):
    its accepted socket, found among this process's descriptors, has Nagle off too."""
    ours = dimse.settings.dimse
    assoc = associate(
        ours.model_copy(update={"ae_title": "NODELAY"}),
        RemoteAe(ours.ae_title, "127.0.0.1", dimse.port),
        [(VERIFICATION, [IMPLICIT])],
    )
    assert assoc.is_established
    try:
        assert int(assoc.send_c_echo().Status) == 0x0000
        client = _socket_of(assoc).getsockname()
        with _accepted(dimse.port, client) as accepted:
            assert _no_delay(accepted) == 1
    finally:
        assoc.release()


def _accepted(port: int, client: tuple[str, int]) -> socket.socket:
    """This process's end of the connection from ``client`` to ``port``, as a duplicate."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            continue
        try:
            local, remote = sock.getsockname(), sock.getpeername()
        except OSError:
            local = remote = None
        if (
            isinstance(local, tuple)
            and isinstance(remote, tuple)
            and (local[1], remote[:2]) == (port, client[:2])
        ):
            return sock
        sock.close()
    raise AssertionError("no accepted socket for the association")


def test_a_plain_socket_keeps_nagle_by_default() -> None:
    """The control: a TCP socket as the operating system makes it has Nagle on, so the test
    above sees our setting, not a default."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert _no_delay(sock) == 0

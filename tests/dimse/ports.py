"""Ports for the DIMSE tests: this suite's range (11200-11299), the first free one."""

import itertools
import socket
import threading

#: the DIMSE tests' ports (listeners of Lightbox and of the peers the tests start)
PORTS = range(11200, 11300)
_lock = threading.Lock()
_next = itertools.cycle(PORTS)


def free_port() -> int:
    """A port of :data:`PORTS` nothing listens on now (tried in turn, so that a port just
    handed out is not handed out again before the others)."""
    with _lock:
        for _ in range(len(PORTS)):
            port = next(_next)
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")

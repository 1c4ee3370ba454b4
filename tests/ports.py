"""Loopback ports for the servers and peers the tests start: one the system picks, or the first
free one of a suite's own range (so that concurrent suites do not race for the same ports)."""

import itertools
import socket
import threading


def free_port() -> int:
    """A loopback port nothing listens on now, picked by the system."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PortRange:
    """The ports of ``ports`` handed out in turn, each the next one nothing listens on now (so
    that a port just handed out is not handed out again before the others); thread-safe."""

    def __init__(self, ports: range, *, reuse_address: bool = False) -> None:
        self.ports = ports
        self._reuse_address = reuse_address
        self._lock = threading.Lock()
        self._next = itertools.cycle(ports)

    def __call__(self) -> int:
        with self._lock:
            for _ in range(len(self.ports)):
                port = next(self._next)
                with socket.socket() as sock:
                    if self._reuse_address:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        sock.bind(("127.0.0.1", port))
                    except OSError:
                        continue
                    return port
        raise RuntimeError(f"no free port in {self.ports.start}-{self.ports.stop - 1}")

"""Loopback ports for the servers and peers the tests start: one the system picks, or the first
free one of a suite's own range (so that concurrent suites do not race for the same ports).

Under pytest-xdist (``make test`` runs ``-n``) the workers are processes that would hand out the
same ports of a range at the same moment, so each worker gets its own share: worker ``gwN``
shifts every range by ``N * STRIDE``. A suite's ranges are 100 ports wide, at most two side by
side (11100 and 11200, 18100 and 18200), hence a stride of 200; the shifted ranges stay below
18100 and below the ephemeral ports (32768) for the first 32 workers (beyond, workers share
ranges and only the check that a port is free keeps them apart).

>>> shifted(range(11200, 11300), worker=0)
range(11200, 11300)
>>> shifted(range(11200, 11300), worker=2)
range(11600, 11700)
"""

import itertools
import os
import socket
import threading
from typing import Final

STRIDE: Final = 200
_WORKERS: Final = 32


def worker_index() -> int:
    """This process's pytest-xdist worker number (``gw3``: 3), 0 outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def shifted(ports: range, *, worker: int | None = None) -> range:
    """``ports`` moved to this worker's (or ``worker``'s) share."""
    offset = ((worker_index() if worker is None else worker) % _WORKERS) * STRIDE
    return range(ports.start + offset, ports.stop + offset)


def free_port() -> int:
    """A loopback port nothing listens on now, picked by the system."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PortRange:
    """The ports of ``ports`` (this xdist worker's share: :func:`shifted`) handed out in turn,
    each the next one nothing listens on now (so that a port just handed out is not handed out
    again before the others); thread-safe."""

    def __init__(self, ports: range, *, reuse_address: bool = False) -> None:
        self.ports = shifted(ports)
        self._reuse_address = reuse_address
        self._lock = threading.Lock()
        self._next = itertools.cycle(self.ports)

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

"""HTTP ports of the peers the tests start (Orthanc's REST API): 18200-18299, the first free."""

import itertools
import socket
import threading

PORTS = range(18200, 18300)
_lock = threading.Lock()
_next = itertools.cycle(PORTS)


def free_http_port() -> int:
    with _lock:
        for _ in range(len(PORTS)):
            port = next(_next)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")

"""The Prometheus exposition of a server's processes: one process, or all the workers of a run.

prometheus-client keeps each process's values in memory, unless ``PROMETHEUS_MULTIPROC_DIR``
names a directory when it is imported: then each process writes its values to files of its
own there (memory-mapped; an update is a write into the page, no system call), and a scrape
sums the files of every process (:func:`exposition`). ``lightbox serve`` makes a fresh
directory for each run before any worker starts (:func:`run_directory`) and removes it when
the server stops, so no value of an earlier run is ever summed into this one's; when a worker
dies, gunicorn's arbiter drops its "live" gauges (:func:`mark_dead`: queue depths, pool use,
the worker count), while its counters and histograms stay in the sums (a count never goes
back).

This module imports nothing of Lightbox: the supervisor runs it without loading the app, and
with ``metrics.port`` serves the exposition there without a token (:func:`start_listener`).
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

__all__ = [
    "CONTENT_TYPE",
    "MULTIPROC_ENV",
    "exposition",
    "mark_dead",
    "multiprocess_dir",
    "run_directory",
    "start_listener",
]

#: prometheus-client reads it when it is imported: set it before a worker imports the app
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: Prometheus's text format, the one :func:`exposition` writes
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: RAM-backed: the files are written on every update
_SHM: Final = Path("/dev/shm")
#: the run directories' names: the prefix, the server's pid, a random part
_PREFIX: Final = "lightbox-metrics-"


def multiprocess_dir() -> str | None:
    """The directory the processes of this run share their values in, if they do."""
    return os.environ.get(MULTIPROC_ENV) or None


def _registry() -> Any:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def exposition() -> bytes:
    """Every metric of the run in Prometheus's text format (reads files: call it off the event
    loop)."""
    from prometheus_client.exposition import generate_latest

    body: bytes = generate_latest(_registry())
    return body


def _sweep(base: Path) -> None:
    """Remove the directories of runs whose server is gone without removing its own (killed):
    they are named for their server's pid."""
    for entry in base.glob(f"{_PREFIX}*-*"):
        pid = entry.name[len(_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:  # alive under another user, or gone meanwhile
            continue


@contextlib.contextmanager
def run_directory() -> Iterator[Path]:
    """A fresh, private directory for this run's metric files, named in ``PROMETHEUS_MULTIPROC_DIR``
    for the processes started from now on; removed, and the variable restored, at the end
    (and, should the server be killed, by the next server's start)."""
    base = _SHM if _SHM.is_dir() and os.access(_SHM, os.W_OK) else Path(tempfile.gettempdir())
    _sweep(base)
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=base))
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def mark_dead(pid: int) -> None:
    """Drop the live gauges of a process that ended (its counters stay in the sums)."""
    path = multiprocess_dir()
    if path is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class Listener:
    """The metrics listener of ``metrics.port``: prometheus-client's small HTTP server, in a
    thread of the process that starts it."""

    def __init__(self, host: str, port: int) -> None:
        from prometheus_client.exposition import start_wsgi_server

        self._server, self._thread = start_wsgi_server(port, addr=host, registry=_registry())

    def close_in_child(self) -> None:
        """In a forked worker: close the inherited socket (the thread is not there)."""
        with contextlib.suppress(OSError):
            self._server.socket.close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def start_listener(host: str, port: int) -> Listener:
    """Serve the exposition on ``host:port`` (any path), without a token: bind it where only the
    scraper reaches it."""
    return Listener(host, port)

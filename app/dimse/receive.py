"""How C-STORE data sets arrive: written to a file as their P-DATA come in, never held whole in
memory (DIMSE-03, DESIGN.md §5).

pynetdicom's default keeps each received data set in memory until the handler runs (a 2 GB
whole-slide image would be 2 GB of RAM per association, and the handler's copy another).
With its documented option ``_config.STORE_RECV_CHUNKED_DATASET`` it writes every P-DATA fragment
to a temporary file instead (after a File Meta of its own), and hands the handler the path
(``event.dataset_path``). The handler (:mod:`app.dimse.store`) then streams the data set from that
file into the ingest spool behind our own File Meta, hashing it on the way (the SHA-256 every
ingest computes). The price is one extra read and write of the bytes through the page cache:
measured at 0.8 ms for a 0.5 MB CT data set on the (loaded, two-core) development machine, where
the SHA-256 of the same bytes took 2.1 ms; the in-memory default would instead hold every data
set whole in RAM while it is received and handled. Memory per association stays at a PDU plus a
1 MiB copy buffer, whatever the instance size.

pynetdicom creates those files with :func:`tempfile.NamedTemporaryFile` in the default temporary
directory: :func:`receiving` points :data:`tempfile.tempdir` (the standard library's documented
setting) at a directory of the spool, so they sit on the spool's filesystem and can be found.
pynetdicom deletes each file once the handler returns; a file whose association was aborted in
the middle of a data set is never handed to a handler and stays, so :class:`Sweeper` removes
files nobody has written to for an hour.

:func:`on_data` bounds what one data set may make us write: the P-DATA of a message are counted
as they arrive (``EVT_DATA_RECV``) and the association is aborted once a data set grows past the
largest instance accepted (``limits.max_instance_bytes``, as for STOW-RS), rather than filling
the disk before the handler could refuse it.
"""

import logging
import os
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from pynetdicom import _config

from app.dimse.audit import record
from app.dimse.context import DimseContext
from app.services.audit import Outcome

__all__ = ["RECEIVE_DIR", "Sweeper", "on_data", "receive_dir", "receiving"]

log = logging.getLogger(__name__)

#: under the spool directory: pynetdicom's files of data sets being received
RECEIVE_DIR: Final = "dimse"
#: a file nobody wrote to for this long belongs to no live association (network and DIMSE
#: timeouts are a minute by default)
STALE_SECONDS: Final = 3600.0
#: how often the sweeper looks
SWEEP_EVERY: Final = 600.0

_P_DATA_TF: Final = 0x04
_PDV_HEADER: Final = struct.Struct(">IBB")  # item length, presentation context id, control

_state_lock = threading.Lock()
#: per association: data set bytes of the message being received, and whether it was aborted
_received: "weakref.WeakKeyDictionary[Any, list[int]]" = weakref.WeakKeyDictionary()


def receive_dir(spool_dir: Path) -> Path:
    """Where pynetdicom's files of incoming data sets go."""
    return spool_dir / RECEIVE_DIR


@contextmanager
def receiving(directory: Path) -> Iterator[None]:
    """Make pynetdicom write incoming C-STORE data sets to files in ``directory`` (and restore
    the previous settings on exit: a test process runs several listeners in turn).

    Both settings are process-wide; the DIMSE process is ours. ``LOG_HANDLER_LEVEL`` "none"
    spares pynetdicom's per-message standard logging (it formats every DIMSE message, a
    measurable part of a small C-STORE's cost); pynetdicom's warnings and errors still log.
    """
    directory.mkdir(parents=True, exist_ok=True)
    saved = (_config.STORE_RECV_CHUNKED_DATASET, tempfile.tempdir, _config.LOG_HANDLER_LEVEL)
    _config.STORE_RECV_CHUNKED_DATASET = True
    tempfile.tempdir = str(directory)
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
        _config.LOG_HANDLER_LEVEL = "none"
    try:
        yield
    finally:
        (
            _config.STORE_RECV_CHUNKED_DATASET,
            tempfile.tempdir,
            _config.LOG_HANDLER_LEVEL,
        ) = saved


class Sweeper:
    """Removes the files of data sets whose association ended in the middle (see the module's
    docstring): at start, then every :data:`SWEEP_EVERY` seconds, in a thread of its own."""

    def __init__(self, directory: Path, stale: float = STALE_SECONDS) -> None:
        self.directory = directory
        self.stale = stale
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dimse-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def sweep(self) -> int:
        """Remove the stale files now; returns how many."""
        cutoff = time.time() - self.stale
        removed = 0
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # its handler finished meanwhile
        if removed:
            log.info("removed %d incomplete C-STORE data sets of aborted associations", removed)
        return removed

    def _run(self) -> None:
        while True:
            try:
                self.sweep()
            except OSError as exc:
                log.warning("could not sweep %s: %s", self.directory, exc)
            if self._stop.wait(SWEEP_EVERY):
                return


def on_data(ctx: DimseContext, event: Any) -> None:
    """``EVT_DATA_RECV`` (each PDU, in the association's reading thread): abort an association
    whose current data set exceeds the instance size limit."""
    data: bytes = event.data
    if not data or data[0] != _P_DATA_TF:
        return
    assoc = event.assoc
    with _state_lock:
        state = _received.get(assoc)
        if state is None:
            state = _received[assoc] = [0, 0]
    if state[1]:
        return  # already being aborted
    limit = ctx.settings.limits.max_instance_bytes
    offset, end = 6, len(data)
    while offset + _PDV_HEADER.size <= end:
        length, _context, control = _PDV_HEADER.unpack_from(data, offset)
        if control & 0x01:  # a command fragment: its last one starts a new message
            if control & 0x02:
                state[0] = 0
        else:
            state[0] += max(0, length - 2)
            if state[0] > limit:
                state[1] = 1
                _abort(ctx, event, limit)
                return
        offset += 4 + length


def _abort(ctx: DimseContext, event: Any, limit: int) -> None:
    record(
        ctx,
        event,
        "store",
        Outcome.FAILURE,
        detail=f"C-STORE data set larger than {limit} bytes: association aborted",
    )
    # abort() waits for the reading thread, which is the one calling us: from another thread
    threading.Thread(target=event.assoc.abort, name="dimse-abort", daemon=True).start()

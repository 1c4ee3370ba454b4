"""The import journal: which files (and archive members) ``lightbox import`` has stored, so that a
re-run skips them without reading them.

A small SQLite file of its own (``data_dir/import-journal.sqlite`` unless ``--journal`` names
another), not the index: it belongs to the machine that reads the files, whatever index or remote
server they go to. A row is keyed by the destination (the index and store, or the remote URL) and
the source (a path, or ``archive!member``) and records the file's size and modification time:
a file changed since is imported again. Rows are written only after the index committed the
instances they name, so a crash loses at most the rows of the last batches, whose files a re-run
sends again, which the index's duplicate check stores once (identical re-sends succeed).
"""

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Final

__all__ = ["ImportJournal", "JournalEntry"]

#: (source, size, mtime_ns)
JournalEntry = tuple[str, int, int]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS done (
    destination TEXT NOT NULL,
    source TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    PRIMARY KEY (destination, source)
) WITHOUT ROWID
"""


class ImportJournal:
    """The journal of one destination; safe to use from several threads (one lock)."""

    def __init__(self, path: Path, destination: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._destination = destination
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # WAL: lookups do not wait for a batch being recorded; NORMAL: a power cut may lose the
        # last rows, whose files are then sent again (harmless, module docstring)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute(_SCHEMA)

    def done(self, source: str, size: int, mtime_ns: int) -> bool:
        """Whether ``source``, as it is now (size and mtime), was stored by an earlier run."""
        with self._lock:
            row = self._conn.execute(
                "SELECT size, mtime_ns FROM done WHERE destination = ? AND source = ?",
                (self._destination, source),
            ).fetchone()
        return row is not None and row[0] == size and row[1] == mtime_ns

    def record(self, entries: Iterable[JournalEntry]) -> None:
        """Record stored sources, in one transaction."""
        rows = [(self._destination, source, size, mtime) for source, size, mtime in entries]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO done (destination, source, size, mtime_ns) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def count(self) -> int:
        """The sources recorded for this destination."""
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*) FROM done WHERE destination = ?", (self._destination,)
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

"""The machine-readable report of what an import refused: one row per refused file or archive
member with its reason (and the DICOM status ingest gave, when it gave one), written as each is
known (nothing held): CSV for a ``.csv`` file, else JSON lines."""

import csv
from pathlib import Path
from typing import IO, Protocol

import orjson

__all__ = ["RefusalReport", "RefusalWriter"]

_FIELDS = ("source", "reason", "status")


class RefusalWriter(Protocol):
    """Where refusals go: a :class:`RefusalReport`, or a worker process's channel to the one its
    parent writes (``app.services.imports.processes``)."""

    def write(self, source: str, reason: str, status: int | None = None) -> None:
        """One refused source and why."""


class RefusalReport:
    """Rows of (source, reason, status), to a file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rows = 0
        self._file: IO[str] = path.open("w", encoding="utf-8", newline="")
        self._csv = path.suffix.lower() == ".csv"
        self._writer = csv.writer(self._file) if self._csv else None
        if self._writer is not None:
            self._writer.writerow(_FIELDS)

    def write(self, source: str, reason: str, status: int | None = None) -> None:
        """One refused source; ``status`` as the DICOM status (e.g. ``0xA700``) when known."""
        code = f"0x{status:04X}" if status is not None else ""
        # a file name that is not UTF-8 (surrogate escapes) is written with escapes
        source = source.encode("utf-8", "backslashreplace").decode("utf-8")
        if self._writer is not None:
            self._writer.writerow((source, reason, code))
        else:
            row = {"source": source, "reason": reason, "status": code or None}
            self._file.write(orjson.dumps(row).decode("utf-8") + "\n")
        self.rows += 1

    def close(self) -> None:
        self._file.close()

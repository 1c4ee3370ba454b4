"""What an import is asked to do and how far it got: its options, counters and outcomes (light:
a parent process that only walks and adds up its workers' counters imports no more than this)."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.services.imports.reading import Reader

__all__ = ["ImportAborted", "ImportOptions", "ImportProgress", "Settled"]


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """How an import runs."""

    jobs: int = 4
    dry_run: bool = False
    #: instances per ingest session (outcomes held until it finishes)
    chunk: int = 256
    #: walk the tree once more first, in a thread, for the totals of a progress bar
    estimate: bool = False


@dataclass(slots=True)
class ImportProgress:
    """Counters of a running import (read by a progress display while it runs)."""

    files: int = 0
    archives: int = 0
    media_directories: int = 0
    stored: int = 0
    existing: int = 0
    refused: int = 0
    not_dicom: int = 0
    skipped: int = 0
    candidates: int = 0  # a dry run: instances that would be sent
    bytes_read: int = 0
    total_files: int | None = None
    total_bytes: int | None = None
    _reader: "Reader | None" = field(default=None, repr=False)

    @property
    def read(self) -> int:
        """Bytes read so far (file bytes; an archive's compressed bytes)."""
        return self._reader.bytes_read.value if self._reader is not None else self.bytes_read

    @property
    def instances(self) -> int:
        return self.stored + self.existing


@dataclass(frozen=True, slots=True)
class Settled:
    """An instance's outcome: stored (``existing``: it was already), or refused and why."""

    stored: bool
    existing: bool = False
    reason: str = ""
    status: int | None = None


class ImportAborted(Exception):
    """The import cannot go on (the destination refuses every instance)."""

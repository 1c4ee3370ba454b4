"""PS3.10 file-sets in tests: read one with pydicom's ``FileSet`` (and release its staging
directory, which it would otherwise clean up with a ResourceWarning when collected)."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydicom.fileset import FileSet


@contextmanager
def read_fileset(dicomdir: Path) -> Iterator[FileSet]:
    """The file-set of ``dicomdir``, loaded by pydicom (every record checked, orphans raised)."""
    fileset = FileSet()
    fileset.load(dicomdir, raise_orphans=True)
    try:
        yield fileset
    finally:
        # FileSet keeps a TemporaryDirectory for staged changes and has no close()
        fileset._stage["t"].cleanup()

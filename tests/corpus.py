"""The real DICOM corpus: pydicom's bundled test and charset files plus pydicom-data, from disk.

``pydicom.data.get_testdata_files`` would try to download files missing from the installation,
which CI (no network beyond package registries) must never do.
"""

from functools import cache
from pathlib import Path

import data_store  # the pydicom-data package
import pydicom

PYDICOM_DATA = Path(pydicom.__file__).parent / "data"
ROOTS = (
    PYDICOM_DATA / "test_files",
    PYDICOM_DATA / "charset_files",
    Path(data_store.__file__).parent / "data",
)
NOT_DICOM = {".py", ".pyc", ".json", ".txt", ".md", ".dump", ".icc", ".gz"}


@cache
def corpus() -> tuple[Path, ...]:
    """Every corpus file (DICOMDIRs and refused files included), sorted."""
    return tuple(
        sorted(
            p
            for root in ROOTS
            for p in root.rglob("*")
            if p.is_file() and p.suffix not in NOT_DICOM
        )
    )


def charset_files() -> tuple[Path, ...]:
    return tuple(p for p in corpus() if p.parent.name == "charset_files")


def corpus_path(name: str) -> Path:
    """The corpus file called ``name`` (the first, if several folders hold one)."""
    for path in corpus():
        if path.name == name:
            return path
    raise FileNotFoundError(name)

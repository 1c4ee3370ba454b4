"""PS3.10 files in the tests: the data set a file holds, to compare what a peer sent or kept with
what was stored (the File Meta group differs from one writer to the next)."""

from app.dicom.part10 import read_file_meta


def dataset_bytes(part10: bytes) -> bytes:
    """The data set of a PS3.10 file: what follows the preamble, "DICM" and the File Meta group
    (what a C-STORE carries)."""
    meta = read_file_meta(part10, whole=True)
    assert meta is not None, "not a PS3.10 file"
    return part10[meta.dataset_offset :]

"""Reading the File Meta group of a PS3.10 file: where the data set starts (pure)."""

import pytest

from app.dicom.filemeta import part10_header
from app.dicom.part10 import NotPart10, read_file_meta
from tests.factories import make_dataset, to_bytes


def test_reads_what_pydicom_wrote_chunk_by_chunk() -> None:
    """Fed a growing prefix, it asks for more until the group is whole, then says where the
    data set starts, whatever the chunk boundaries."""
    ds = make_dataset("1.2.840.10008.1.2")
    raw = to_bytes(ds)
    answers = [read_file_meta(raw[:n]) for n in range(0, 600, 7)]
    first = next(i for i, meta in enumerate(answers) if meta is not None)
    assert all(meta is None for meta in answers[:first])
    meta = answers[first]
    assert meta is not None
    assert (meta.sop_uid, meta.sop_class_uid) == (ds.SOPInstanceUID, ds.SOPClassUID)
    assert meta.transfer_syntax == "1.2.840.10008.1.2"
    assert raw[meta.dataset_offset : meta.dataset_offset + 4] == b"\x08\x00\x05\x00"


def test_not_part10() -> None:
    with pytest.raises(NotPart10, match="DICM"):
        read_file_meta(bytes(200))
    head = part10_header("1.2.3", "1.2.3.4", "1.2.840.10008.1.2.1")
    with pytest.raises(NotPart10, match="ends inside"):
        read_file_meta(head[:-3], whole=True)
    without_syntax = bytes(128) + b"DICM" + bytes.fromhex("02000200 5549 0400") + b"1.2\0"
    with pytest.raises(NotPart10, match=r"\(0002,0003\) missing"):
        read_file_meta(without_syntax, whole=True)

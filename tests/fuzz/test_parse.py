"""The direct DICOM parser (app.dicom.direct) against pydicom, and parse_instance on any bytes.

:func:`app.dicom.direct.read_dataset` promises the DICOM JSON that
:func:`app.dicom.dicomjson.dataset_to_dict` makes of pydicom's reading, or
:class:`~app.dicom.direct.Unsupported`; :func:`app.dicom.parse.parse_instance` promises a
:class:`~app.dicom.instance.ParsedInstance` or an :class:`~app.errors.InstanceRejected`, whatever
the bytes (files from the strategies, then damaged: bytes overwritten, cut, inserted).
"""

import io
import warnings

from hypothesis import given
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from app.dicom import direct
from app.dicom.dicomjson import dataset_to_dict
from app.dicom.instance import ParsedInstance
from app.dicom.parse import parse_instance
from app.errors import InstanceRejected
from tests.fuzz.outcome import outcome
from tests.fuzz.strategies import datasets

BASE = "/studies/1/series/2/instances/3"


def _file(ds: Dataset, implicit: bool) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@st.composite
def files(draw: st.DrawFn) -> tuple[bytes, bool]:
    implicit = draw(st.booleans())
    return _file(draw(datasets()), implicit), implicit


@st.composite
def damaged(draw: st.DrawFn) -> tuple[bytes, bool]:
    data, implicit = draw(files())
    buf = bytearray(data)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(buf)))
        kind = draw(st.sampled_from(["overwrite", "cut", "insert"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if kind == "overwrite":
            buf[at : at + len(chunk)] = chunk
        elif kind == "cut":
            del buf[at:]
        else:
            buf[at:at] = chunk
    return bytes(buf), implicit


def _direct(buf: bytes, implicit: bool, inline: int) -> dict[str, object] | Exception:
    def read() -> dict[str, object]:
        _, pos = direct.read_file_meta(buf, 132)
        result = direct.read_dataset(
            buf, pos, len(buf), implicit=implicit, inline_binary_max=inline, base_path=BASE
        )
        return result.metadata

    return outcome(read, direct.Unsupported)


def _pydicom(buf: bytes, inline: int) -> dict[str, object] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about what it repairs
        try:
            ds = dcmread(io.BytesIO(buf), defer_size=direct.DEFER_SIZE)
            return dataset_to_dict(ds, base_path=BASE, inline_binary_max=inline)
        except Exception:
            return None  # pydicom cannot read it: no reference to compare with


@given(files(), st.sampled_from([0, 64, 1 << 10]))
def test_direct_reading_equals_pydicom(file: tuple[bytes, bool], inline: int) -> None:
    buf, implicit = file
    metadata = _direct(buf, implicit, inline)
    if not isinstance(metadata, Exception):
        assert metadata == _pydicom(buf, inline)


@given(damaged(), st.sampled_from([0, 64]))
def test_direct_reading_of_damaged_files_equals_pydicom_or_gives_up(
    file: tuple[bytes, bool], inline: int
) -> None:
    buf, implicit = file
    metadata = _direct(buf, implicit, inline)
    if not isinstance(metadata, Exception):
        expected = _pydicom(buf, inline)
        if expected is not None:
            assert metadata == expected


@given(damaged() | st.binary(max_size=300).map(lambda b: (b, False)))
def test_parse_instance_reads_or_rejects_any_bytes(file: tuple[bytes, bool]) -> None:
    parsed = outcome(lambda: parse_instance(file[0]), InstanceRejected)
    assert isinstance(parsed, ParsedInstance | InstanceRejected)

"""Hypothesis strategies shared by the property tests: header text, and DICOM data sets whose
values are valid for their VRs.

Each drawn data set is UTF-8 (ISO_IR 192), carries the four UIDs an instance needs, and a few
attributes of the VRs DICOM JSON treats differently (strings, split strings, person names,
numbers as text, binary numbers, binary values, sequences), with values as their VR allows, so
that what a writer writes a reader must give back.
"""

import datetime
from typing import Any

from hypothesis import strategies as st
from pydicom.dataset import Dataset

#: Accept-like text: mostly the characters media ranges are made of, sometimes anything
accept_text = st.text(alphabet='abcdijlmnoprstuy*/;=,." \\q0123456789.-+') | st.text()
#: Range-like text: mostly the characters a Range header is made of, sometimes anything
range_text = st.text(alphabet="bytes=-,0123456789 \t") | st.text()

#: (keyword, VR) of single-valued attributes, a few per VR
SCALARS: tuple[tuple[str, str], ...] = (
    ("PatientName", "PN"),
    ("ReferringPhysicianName", "PN"),
    ("PatientID", "LO"),
    ("StudyDescription", "LO"),
    ("AccessionNumber", "SH"),
    ("Modality", "CS"),
    ("StudyDate", "DA"),
    ("StudyTime", "TM"),
    ("SliceThickness", "DS"),
    ("InstanceNumber", "IS"),
    ("Rows", "US"),
    ("ImageComments", "LT"),
    ("DerivationDescription", "ST"),
    ("TextValue", "UT"),
    ("RetrieveURL", "UR"),
    ("ReferencedSOPInstanceUID", "UI"),
    ("ReferencePixelX0", "SL"),
    ("TagAngleSecondAxis", "SS"),
    ("TotalNumberOfStudyRecords", "UV"),
    ("ReferencedFrameNumbers", "US"),
    ("DiffusionBValue", "FD"),
    ("RecommendedDisplayFrameRateInFloat", "FL"),
)

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: text without control characters and backslashes, any script (UTF-8 data set)
_TEXT = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\\")
#: UIDs drawn, not generated: a strategy must give the same data set for the same draws
uids = st.integers(min_value=1, max_value=10**30).map(lambda n: f"2.25.{n}")
_word = st.text(alphabet=_LETTERS + "0123456789", min_size=1, max_size=8)


def _no_edges(text: str) -> bool:
    return text == text.strip(" ")


def _value(vr: str) -> st.SearchStrategy[Any]:
    if vr == "PN":
        return st.lists(_word, min_size=1, max_size=3).map("^".join)
    if vr in ("LO", "SH"):
        return st.text(alphabet=_TEXT, min_size=1, max_size=16).filter(_no_edges)
    if vr == "CS":
        return st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=16)
    if vr == "DA":
        return st.dates(datetime.date(1900, 1, 1), datetime.date(2100, 12, 31)).map(
            lambda d: d.strftime("%Y%m%d")
        )
    if vr == "TM":
        return st.times().map(lambda t: t.strftime("%H%M%S"))
    if vr == "DS":
        return st.integers(min_value=-9999, max_value=9999).map(lambda n: f"{n / 100:g}")
    if vr == "IS":
        return st.integers(min_value=-(2**31), max_value=2**31 - 1).map(str)
    if vr == "US":
        return st.integers(min_value=0, max_value=65535)
    if vr == "SL":
        return st.integers(min_value=-(2**31), max_value=2**31 - 1)
    if vr == "SS":
        return st.integers(min_value=-(2**15), max_value=2**15 - 1)
    if vr == "UV":  # beyond 2**53 - 1 a string in DICOM JSON (JSON-03)
        return st.integers(min_value=0, max_value=2**53 - 1)
    if vr == "FD":
        return st.floats(allow_nan=False, allow_infinity=False)
    if vr == "FL":
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    if vr in ("LT", "ST", "UT"):
        return st.text(alphabet=_TEXT, min_size=1, max_size=40).filter(_no_edges)
    if vr == "UR":
        return st.text(alphabet=_LETTERS + ":/.-_~?=&", min_size=1, max_size=30)
    if vr == "UI":
        return uids
    raise AssertionError(vr)


@st.composite
def items(draw: st.DrawFn, depth: int = 0) -> Dataset:
    """A sequence item: a few scalar attributes, and maybe a nested sequence."""
    ds = Dataset()
    for keyword, vr in draw(st.lists(st.sampled_from(SCALARS[:10]), max_size=3, unique=True)):
        setattr(ds, keyword, draw(_value(vr)))
    if depth < 1 and draw(st.booleans()):
        ds.ReferencedImageSequence = draw(st.lists(items(depth + 1), max_size=2))
    return ds


@st.composite
def datasets(draw: st.DrawFn) -> Dataset:
    """A UTF-8 data set with its four UIDs and a random selection of attributes."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = (draw(uids) for _ in "123")
    for keyword, vr in draw(st.lists(st.sampled_from(SCALARS), max_size=8, unique=True)):
        setattr(ds, keyword, draw(_value(vr)))
    if draw(st.booleans()):
        ds.ImageType = draw(st.lists(_value("CS"), min_size=1, max_size=3))
    if draw(st.booleans()):  # a binary value: InlineBinary (F.2.7)
        ds.SelectorOBValue = draw(
            st.binary(min_size=1, max_size=40).map(lambda b: b + b"\0" * (len(b) % 2))
        )
    if draw(st.booleans()):
        ds.RequestAttributesSequence = draw(st.lists(items(), max_size=2))
    return ds

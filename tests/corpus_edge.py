"""Edge values of indexed attributes (issue 19 class 5): instances both index databases must store.

Each :class:`Edge` is an instance built with pydicom around one value DICOM allows (or a
non-conformant file carries) that an index column cannot take as it is on one of the databases:
an IS beyond 32 bits, NUL in text, text beyond PostgreSQL's B-tree entry limit, 64-character
UIDs, odd dates, a US attribute an explicit VR made UL, an integer attribute given as FD. Each
names the attribute whose full value WADO-RS metadata must return and the QIDO-RS searches that
must find it; every search runs against the whole corpus, so its expected result is the set of
edges it finds, on PostgreSQL and SQLite alike.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

from tests.factories import make_dataset

_RNG = random.Random(19)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _random(length: int) -> str:
    """Incompressible text: PostgreSQL compresses a long but repetitive index entry below its
    limit, which would hide the limit."""
    return "".join(_RNG.choices(_ALPHABET, k=length))


#: 1 MiB of text
RANDOM = _random(1 << 20)
#: a value that needs more than PostgreSQL's largest B-tree entry (about 2,700 bytes)
LONG = _random(3000)
#: two values of which the index holds the same first 500 characters (the prefix it indexes)
_TWINS = _random(600)
TWIN_A = _TWINS + "A" * 2400
TWIN_B = _TWINS + "B" * 2400
#: a person name of five components, three of them long
LONG_PN = f"{LONG[:900]}^{LONG[900:1800]}^{LONG[1800:]}^Dr^III"


@dataclass(frozen=True, slots=True)
class Edge:
    """One instance of the corpus."""

    name: str
    build: Callable[[], Dataset]
    #: the DICOM JSON key whose attribute WADO-RS metadata must return whole
    key: str
    #: that attribute's expected ``Value``
    value: list[Any]
    #: QIDO-RS searches (resource path, parameters) that must find it
    found_by: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def _with(**overrides: Any) -> Callable[[], Dataset]:
    return lambda: make_dataset(**overrides)


def _implicit(**overrides: Any) -> Callable[[], Dataset]:
    """In implicit VR: the only encoding whose LO values may pass 64 KiB (an explicit VR's
    length has 16 bits; pydicom would write such a value as UN)."""

    def build() -> Dataset:
        ds = make_dataset(**overrides)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        return ds

    return build


def _element(tag: int, vr: str, value: Any, *, pixels: bool = False) -> Callable[[], Dataset]:
    """A dataset whose ``tag`` has the explicit ``vr`` (its dictionary VR is another one)."""

    def build() -> Dataset:
        ds = make_dataset()
        if not pixels:  # no image to describe: only the attribute's value matters
            del ds.PixelData
        ds[tag] = DataElement(tag, vr, value)
        return ds

    return build


def _uid64() -> str:
    """A fresh 64-character UID (the longest PS3.5 §9.1 allows)."""
    base = str(generate_uid(prefix=None))  # 2.25. and a UUID as a decimal
    return (base + "1" * 64)[:64]


UID64 = (_uid64(), _uid64(), _uid64())


def _uid64_instance() -> Dataset:
    ds = make_dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = UID64
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _request_attributes() -> Dataset:
    ds = make_dataset()
    item = Dataset()
    item.ScheduledProcedureStepID = LONG
    item.RequestedProcedureID = "RP-1"
    ds.RequestAttributesSequence = [item]
    return ds


#: the search resources
S, SE, IN = "/studies", "/series", "/instances"
EDGES: tuple[Edge, ...] = (
    Edge(
        "IS of 12 digits",
        _with(SeriesNumber="999999999999"),
        "00200011",
        [999999999999],
        [(SE, {"SeriesNumber": "999999999999"})],
    ),
    Edge(
        "IS, the most negative",
        _with(InstanceNumber="-99999999999"),
        "00200013",
        [-99999999999],
        [(IN, {"InstanceNumber": "-99999999999"})],
    ),
    Edge(
        "IS just beyond 32 bits",
        _with(InstanceNumber="2147483648"),
        "00200013",
        [2147483648],
        [(IN, {"InstanceNumber": "2147483648"})],
    ),
    Edge(
        "US made UL by its explicit VR",
        _element(0x00280010, "UL", 4_000_000_000),
        "00280010",
        [4_000_000_000],
        [(IN, {"Rows": "4000000000"})],
    ),
    Edge(
        # beyond 64 bits: no column holds it, the metadata does (and no search can name it)
        "IS given as FD beyond 64 bits",
        _element(0x00200013, "FD", 1e300),
        "00200013",
        [1e300],
    ),
    Edge(
        "NUL in PatientName",
        _with(PatientName="Nul\x00^Jane"),
        "00100010",
        [{"Alphabetic": "Nul\x00^Jane"}],
        [(S, {"PatientName": "NUL*"}), (S, {"PatientName": "nul?^jane"})],
    ),
    Edge(
        "NUL in PatientID",
        _with(PatientID="P\x00ID"),
        "00100020",
        ["P\x00ID"],
        [(S, {"PatientID": "P?ID"})],
    ),
    Edge(
        "1 MB StudyDescription",
        _implicit(StudyDescription=RANDOM),
        "00081030",
        [RANDOM],
        [
            (S, {"StudyDescription": RANDOM[:100] + "*"}),
            (S, {"StudyDescription": "*" + RANDOM[-50:]}),
        ],
    ),
    Edge(
        "long StudyDescription (twin A)",
        _with(StudyDescription=TWIN_A),
        "00081030",
        [TWIN_A],
        [(S, {"StudyDescription": TWIN_A}), (S, {"StudyDescription": "*AAAA"})],
    ),
    Edge(
        "long StudyDescription (twin B)",
        _with(StudyDescription=TWIN_B),
        "00081030",
        [TWIN_B],
        [(S, {"StudyDescription": TWIN_B})],
    ),
    Edge(
        "long PatientID",
        _with(PatientID=LONG),
        "00100020",
        [LONG],
        [(S, {"PatientID": LONG})],
    ),
    Edge(
        "PN of long components and three groups",
        _with(PatientName=f"{LONG_PN}=Ideo^Graphic=Pho"),
        "00100010",
        [
            {
                "Alphabetic": LONG_PN,
                "Ideographic": "Ideo^Graphic",
                "Phonetic": "Pho",
            }
        ],
        [(S, {"PatientName": f"{LONG_PN}=Ideo^Graphic=Pho"})],
    ),
    Edge(
        "long ReferringPhysicianName",
        _with(ReferringPhysicianName=LONG),
        "00080090",
        [{"Alphabetic": LONG}],
        [(S, {"ReferringPhysicianName": LONG.upper()})],
    ),
    Edge(
        "long AccessionNumber",
        _with(AccessionNumber=LONG, IssuerOfPatientID=LONG, StudyID=LONG, PatientSex=LONG),
        "00080050",
        [LONG],
        [
            (S, {"AccessionNumber": LONG}),
            (S, {"IssuerOfPatientID": LONG}),
            (S, {"StudyID": LONG}),
            (S, {"PatientSex": LONG}),
        ],
    ),
    Edge(
        "long Modality, SeriesDescription and BodyPartExamined",
        _with(Modality=LONG, SeriesDescription=LONG, BodyPartExamined=LONG),
        "00080060",
        [LONG],
        [
            (S, {"ModalitiesInStudy": LONG}),
            (SE, {"Modality": LONG}),
            (SE, {"SeriesDescription": LONG}),
            (SE, {"BodyPartExamined": LONG[:10] + "*"}),
        ],
    ),
    Edge(
        "long ScheduledProcedureStepID",
        _request_attributes,
        "00400275",
        [{"00400009": {"vr": "SH", "Value": [LONG]}, "00401001": {"vr": "SH", "Value": ["RP-1"]}}],
        [(SE, {"RequestAttributesSequence.ScheduledProcedureStepID": LONG})],
    ),
    Edge(
        "UIDs of 64 characters",
        _uid64_instance,
        "0020000D",
        [UID64[0]],
        [(S, {"StudyInstanceUID": UID64[0]}), (IN, {"SOPInstanceUID": UID64[2]})],
    ),
    Edge(
        "ACR-NEMA StudyDate, year 1 and year 9999",
        _with(StudyDate="1999.12.31", PatientBirthDate="00010101", SeriesDate="99991231"),
        "00080020",
        ["1999.12.31"],
        [
            (S, {"StudyDate": "19991231"}),
            (S, {"PatientBirthDate": "00010101"}),
            (SE, {"SeriesDate": "99991231-"}),
        ],
    ),
    Edge(
        # no date for the index: searched by any date range, it is not found
        "StudyDate that is no date",
        _with(StudyDate="20241301", StudyTime="25"),
        "00080020",
        ["20241301"],
    ),
    Edge(
        "long TimezoneOffsetFromUTC",
        _with(TimezoneOffsetFromUTC="+0100" + LONG[:100]),
        "00080201",
        ["+0100" + LONG[:100]],
    ),
)

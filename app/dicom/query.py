"""QIDO-RS query parameters as a typed :class:`Query` (PS3.18 §8.3.4, PS3.4 §C.2.2.2).

:func:`parse_qido` reads the query parameters of a search (already percent-decoded as UTF-8) into
one :class:`Query`: a matcher per match key, the attributes to return, paging and the warnings to
send back. The same type is meant to come out of a C-FIND identifier, so QIDO-RS and C-FIND share
one matching engine (``app.index.search`` compiles it to SQL).

Only the STUDY level is built so far. Its match keys (QIDO-04/05) are listed in
:data:`STUDY_KEYS`; any other valid attribute is ignored and named in a warning (QIDO-02/03),
anything that is not an attribute at all is a 400 naming the parameter.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Final

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from app.dicom.attributes import Level, in_study_object
from app.dicom.text import parse_da
from app.dicom.uids import is_valid_uid
from app.errors import BadRequest

__all__ = [
    "STUDY_KEYS",
    "DateRange",
    "Matcher",
    "Query",
    "Single",
    "StudyRestriction",
    "Universal",
    "ValueList",
    "Wildcard",
    "parse_date_range",
    "parse_qido",
    "parse_tag",
    "split_list",
]

#: VRs on which ``*`` and ``?`` are wildcards (PS3.4 §C.2.2.2.4, QIDO-09)
WILDCARD_VRS: Final = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})


@dataclass(frozen=True, slots=True)
class Key:
    """A supported match key: its tag and VR."""

    tag: int
    keyword: str
    vr: str


#: study-level match keys with an indexed column (QIDO-04/05)
STUDY_KEYS: Final[dict[str, Key]] = {
    k.keyword: k
    for k in (
        Key(0x0020000D, "StudyInstanceUID", "UI"),
        Key(0x00100020, "PatientID", "LO"),
        Key(0x00100010, "PatientName", "PN"),
        Key(0x00100030, "PatientBirthDate", "DA"),
        Key(0x00100040, "PatientSex", "CS"),
        Key(0x00080050, "AccessionNumber", "SH"),
        Key(0x00200010, "StudyID", "SH"),
        Key(0x00080090, "ReferringPhysicianName", "PN"),
        Key(0x00081030, "StudyDescription", "LO"),
        Key(0x00080020, "StudyDate", "DA"),
        Key(0x00080061, "ModalitiesInStudy", "CS"),
    )
}
_STUDY_KEYS_BY_TAG: Final = {k.tag: k for k in STUDY_KEYS.values()}
#: attributes computed per study, returnable at the study level (QIDO-21/26)
STUDY_COMPUTED_TAGS: Final = frozenset({0x00080056, 0x00080061, 0x00081190, 0x00201206, 0x00201208})

_HEX_TAG: Final = re.compile(r"[0-9A-Fa-f]{8}")
_RESERVED: Final = frozenset(
    {"limit", "offset", "fuzzymatching", "includefield", "emptyvaluematching"}
    | {"multiplevaluematching"}
)


# --- matchers (PS3.4 §C.2.2.2) ---


@dataclass(frozen=True, slots=True)
class Universal:
    """Universal matching (C.2.2.2.3): filters nothing; the attribute is returned."""


@dataclass(frozen=True, slots=True)
class Single:
    """Single value matching (C.2.2.2.1); for PN the value is already normalised."""

    value: str


@dataclass(frozen=True, slots=True)
class Wildcard:
    """Wildcard matching (C.2.2.2.4): ``*`` any run, ``?`` one character."""

    pattern: str


@dataclass(frozen=True, slots=True)
class ValueList:
    """List of values (UID list matching C.2.2.2.2; ModalitiesInStudy QIDO-13): any of them."""

    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DateRange:
    """Range matching on DA (C.2.2.2.5), bounds inclusive; a single date has low == high."""

    low: date | None
    high: date | None


Matcher = Universal | Single | Wildcard | ValueList | DateRange


@dataclass(frozen=True, slots=True)
class StudyRestriction:
    """What a caller may see, as a filter on studies (scoped grants, e.g. a share token).

    ``None`` in a field means no restriction on it; when both are set a study must satisfy both.
    Searches at every level apply it to the study a result belongs to, so a restricted caller
    never sees a study, series or instance outside the grant.
    """

    study_uids: frozenset[str] | None = None
    patient_ids: frozenset[str] | None = None

    @property
    def unrestricted(self) -> bool:
        return self.study_uids is None and self.patient_ids is None

    def allows(self, study_uid: str, patient_id: str | None) -> bool:
        """Whether a study with these identifiers is inside the grant.

        >>> StudyRestriction(study_uids=frozenset({"1.2"})).allows("1.2", None)
        True
        >>> StudyRestriction(patient_ids=frozenset({"P1"})).allows("1.2", "P2")
        False
        """
        if self.study_uids is not None and study_uid not in self.study_uids:
            return False
        return self.patient_ids is None or (
            patient_id is not None and patient_id in self.patient_ids
        )


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed search: filters by keyword, returned attributes, paging, warnings."""

    level: Level
    filters: dict[str, Matcher] = field(default_factory=dict)
    #: tags asked for by includefield or named as match keys (returned even when empty)
    include: frozenset[int] = frozenset()
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False
    #: human-readable Warning texts (the front end adds ``299 {base}:``)
    warnings: tuple[str, ...] = ()


# --- value parsers ---


def parse_tag(name: str) -> int | None:
    """The tag named by a keyword (exact PS3.6 spelling) or 8 hex digits, or ``None``.

    >>> hex(parse_tag("PatientName")), hex(parse_tag("0020000d"))
    ('0x100010', '0x20000d')
    >>> parse_tag("patientname") is None, parse_tag("0010001") is None
    (True, True)
    """
    if _HEX_TAG.fullmatch(name):
        return int(name, 16)
    tag = tag_for_keyword(name)
    return int(tag) if tag is not None else None


def split_list(value: str) -> tuple[str, ...]:
    """Split a UID or code list on commas or backslashes (QIDO-07), dropping empty items.

    >>> split_list("1.2.3,1.2.4"), split_list("CT\\\\MR"), split_list(" CT , ")
    (('1.2.3', '1.2.4'), ('CT', 'MR'), ('CT',))
    """
    return tuple(v.strip() for v in re.split(r"[,\\]", value) if v.strip())


def parse_date_range(value: str, name: str) -> DateRange:
    """A DA value or range ``a-b``, ``a-``, ``-b`` (QIDO-10); else :class:`BadRequest`.

    >>> parse_date_range("20240101-20240131", "StudyDate")
    DateRange(low=datetime.date(2024, 1, 1), high=datetime.date(2024, 1, 31))
    >>> parse_date_range("20240101", "StudyDate")
    DateRange(low=datetime.date(2024, 1, 1), high=datetime.date(2024, 1, 1))
    >>> parse_date_range("-20240131", "StudyDate").low is None
    True
    >>> parse_date_range("2024-01-01", "StudyDate")
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: StudyDate: invalid date or date range '2024-01-01'
    """
    error = BadRequest(f"{name}: invalid date or date range {value[:64]!r}")
    parts = value.split("-")
    if len(parts) == 1:
        single = parse_da(parts[0])
        if single is None:
            raise error
        return DateRange(single, single)
    if len(parts) != 2 or parts == ["", ""]:
        raise error
    low = parse_da(parts[0]) if parts[0] else None
    high = parse_da(parts[1]) if parts[1] else None
    if (parts[0] and low is None) or (parts[1] and high is None):
        raise error
    if low is not None and high is not None and low > high:
        raise error
    return DateRange(low, high)


def parse_unsigned(value: str, name: str) -> int:
    """An unsigned decimal integer (QIDO-17), else :class:`BadRequest`.

    >>> parse_unsigned("101", "limit")
    101
    >>> parse_unsigned("-1", "limit")
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: limit must be an unsigned integer
    """
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise BadRequest(f"{name} must be an unsigned integer")
    return int(value)


def _matcher(key: Key, value: str) -> Matcher:
    value = value.strip(" ")
    if value in ("", "*"):
        return Universal()
    name = key.keyword
    if "\x00" in value:
        raise BadRequest(f"{name}: NUL character in value")
    if key.vr == "UI":
        uids = split_list(value)
        bad = [u for u in uids if not is_valid_uid(u)]
        if not uids or bad:
            raise BadRequest(f"{name}: invalid UID list")
        return ValueList(uids)
    if key.vr == "DA":
        return parse_date_range(value, name)
    if name == "ModalitiesInStudy":
        return ValueList(split_list(value))
    if key.vr in WILDCARD_VRS and ("*" in value or "?" in value):
        return Wildcard(value)
    return Single(value)


def _includefields(values: Iterable[str]) -> tuple[frozenset[int], bool]:
    tags: set[int] = set()
    include_all = False
    named = False
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if item == "all":
                include_all = True
                continue
            named = True
            tag = parse_tag(item.split(".")[0])
            if tag is not None:  # unknown names are ignored (QIDO-16)
                tags.add(tag)
    if include_all and named:
        raise BadRequest("includefield: 'all' cannot be combined with attribute names")
    return frozenset(tags), include_all


def parse_qido(params: Iterable[tuple[str, str]], *, level: Level = Level.STUDY) -> Query:
    """Read QIDO-RS query parameters for a search at ``level`` (only STUDY so far).

    >>> q = parse_qido([("PatientName", "*mul*"), ("00080020", "20240101-"), ("limit", "5")])
    >>> q.filters["PatientName"], q.filters["StudyDate"].low, q.limit
    (Wildcard(pattern='*mul*'), datetime.date(2024, 1, 1), 5)
    >>> parse_qido([("Modality", "CT")]).warnings
    ('Ignored attributes not supported at this level: Modality',)
    >>> parse_qido([("PatientID", "1"), ("00100020", "2")])
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: 00100020 (PatientID): attribute given more than once
    """
    if level is not Level.STUDY:
        raise NotImplementedError(f"QIDO-RS at level {level} is not built yet")
    filters: dict[str, Matcher] = {}
    seen: set[int] = set()
    include: set[int] = set()
    ignored: list[str] = []
    warnings: list[str] = []
    includefields: list[str] = []
    limit: int | None = None
    offset = 0
    fuzzy = False
    for name, value in params:
        if name in _RESERVED:
            if name == "includefield":
                includefields.append(value)
            elif name == "limit":
                limit = parse_unsigned(value, name)
            elif name == "offset":
                offset = parse_unsigned(value, name)
            elif name == "fuzzymatching":
                if value not in ("true", "false"):
                    raise BadRequest("fuzzymatching must be 'true' or 'false'")
                fuzzy = value == "true"
            elif value not in ("true", "false"):
                raise BadRequest(f"{name} must be 'true' or 'false'")
            elif value == "true":
                warnings.append(
                    f"The {name} parameter is not supported. "
                    "Only literal matching has been performed."
                )
            continue
        path = name.split(".")
        tags = [parse_tag(part) for part in path]
        if any(t is None for t in tags):
            raise BadRequest(f"{name}: unknown attribute or query parameter")
        tag = tags[0]
        assert tag is not None
        if tag in seen and len(path) == 1:
            raise BadRequest(f"{name} ({keyword_of(tag)}): attribute given more than once")
        seen.add(tag)
        key = _STUDY_KEYS_BY_TAG.get(tag)
        if key is None or len(path) > 1:
            ignored.append(name)
            continue
        filters[key.keyword] = _matcher(key, value)
        include.add(tag)
    tags_included, include_all = _includefields(includefields)
    if fuzzy:
        warnings.insert(
            0,
            "The fuzzymatching parameter is not supported. "
            "Only literal matching has been performed.",
        )
    if ignored:
        warnings.append(
            "Ignored attributes not supported at this level: " + ", ".join(sorted(set(ignored)))
        )
    returned = frozenset(
        t for t in include | tags_included if in_study_object(t) or t in STUDY_COMPUTED_TAGS
    )
    return Query(
        level=level,
        filters=filters,
        include=returned,
        include_all=include_all,
        limit=limit,
        offset=offset,
        fuzzy=fuzzy,
        warnings=tuple(warnings),
    )


def vr_of(tag: int) -> str:
    """The dictionary VR of ``tag`` (first choice when ambiguous), ``UN`` if unknown.

    >>> vr_of(0x00100010), vr_of(0x00280106), vr_of(0x00091001)
    ('PN', 'US', 'UN')
    """
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def keyword_of(tag: int) -> str:
    """The PS3.6 keyword of ``tag``, or its 8 hex digits.

    >>> keyword_of(0x00100010), keyword_of(0x00091001)
    ('PatientName', '00091001')
    """
    return keyword_for_tag(tag) or f"{tag:08X}"

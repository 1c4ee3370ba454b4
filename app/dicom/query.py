"""QIDO-RS query parameters as a typed :class:`Query` (PS3.18 §8.3.4, §10.6, PS3.4 §C.2.2.2).

:func:`parse_qido` reads the query parameters of a search (already percent-decoded as UTF-8, once)
into one :class:`Query`: a matcher per match key, the attributes to return, paging and the warnings
to send back. The same type is meant to come out of a C-FIND identifier, so QIDO-RS and C-FIND share
one matching engine (``app.index.search`` compiles it to SQL).

A search targets one of the six resources of PS3.18 Table 10.6.1-2 (:class:`Resource`). Each has
the levels whose attributes may be match keys (QIDO-03, §10.6.1.2.1) and the levels whose
attributes come back (QIDO-24, §10.6.3.3). The match keys with an index column are listed in
:data:`KEYS` (QIDO-04/05, the counts of QIDO-26, and the two RequestAttributesSequence paths of
QIDO-12). A valid attribute that is not a key, or not allowed on the resource, is ignored and
named in a ``Warning`` (QIDO-02/03); anything that is not an attribute is a 400 naming it.

Matching rules (PS3.4 §C.2.2.2): single value (:class:`Single`, PN case- and accent-insensitive),
UID and code lists (:class:`ValueList`), universal (:class:`Universal`), wildcards on the VRs of
QIDO-09 (:class:`Wildcard`), DA and TM ranges with partial TM precision (:class:`DateRange`,
:class:`TimeRange`), a DA and a TM key of one pair combined into one date-time range
(:class:`DateTimeRange`, §8.3.4.1.1), integers (:class:`Number`), and with ``fuzzymatching=true``
person names matched per component prefix in any order (:class:`FuzzyName`, QIDO-14).
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Final

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from app.dicom.attributes import Level, level_of
from app.dicom.text import normalize_pn, normalize_tm, normalize_tm_upper, parse_da
from app.dicom.uids import is_valid_uid
from app.errors import BadRequest

__all__ = [
    "KEYS",
    "DateRange",
    "DateTimeRange",
    "FuzzyName",
    "Key",
    "Matcher",
    "Number",
    "Query",
    "Resource",
    "Single",
    "SortOrder",
    "StudyRestriction",
    "TimeRange",
    "Universal",
    "ValueList",
    "Wildcard",
    "check_time_ranges",
    "key_at",
    "matcher_for",
    "parse_date_range",
    "parse_qido",
    "parse_tag",
    "parse_time_range",
    "split_list",
]

#: VRs on which ``*`` and ``?`` are wildcards (PS3.4 §C.2.2.2.4, QIDO-09)
WILDCARD_VRS: Final = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
#: the most UIDs (or codes) one list match key may hold; more is a 400, not a huge statement
MAX_LIST_ITEMS: Final = 1000
#: the longest match key value accepted (longer ones are a 400, not a slow LIKE)
MAX_VALUE_LENGTH: Final = 16384


class Resource(StrEnum):
    """The six QIDO-RS resources (PS3.18 Table 10.6.1-2, RES-02), and the patients a C-FIND
    at the PATIENT level of the Patient Root model searches (PS3.4 §C.6.1.1.2; no QIDO-RS
    resource: DICOMweb has no patient level)."""

    STUDIES = "studies"  # /studies
    STUDY_SERIES = "study-series"  # /studies/{study}/series
    SERIES = "series"  # /series
    STUDY_INSTANCES = "study-instances"  # /studies/{study}/instances
    SERIES_INSTANCES = "series-instances"  # /studies/{study}/series/{series}/instances
    INSTANCES = "instances"  # /instances
    PATIENTS = "patients"  # C-FIND, Patient Root, PATIENT level

    @property
    def level(self) -> Level:
        """The level of the objects the resource answers with."""
        if self is Resource.PATIENTS:
            return Level.PATIENT
        if self in (Resource.STUDIES,):
            return Level.STUDY
        if self in (Resource.STUDY_SERIES, Resource.SERIES):
            return Level.SERIES
        return Level.INSTANCE

    @property
    def match_levels(self) -> frozenset[Level]:
        """Levels whose attributes may be match keys here (QIDO-03, PS3.18 §10.6.1.2.1)."""
        return _MATCH_LEVELS[self]

    @property
    def returned_levels(self) -> frozenset[Level]:
        """Levels whose attributes the result objects hold (QIDO-24, PS3.18 §10.6.3.3)."""
        return _RETURNED_LEVELS[self]


_P, _ST, _SE, _I = Level.PATIENT, Level.STUDY, Level.SERIES, Level.INSTANCE
_MATCH_LEVELS: Final = {
    Resource.STUDIES: frozenset({_P, _ST}),
    Resource.STUDY_SERIES: frozenset({_P, _SE}),
    Resource.SERIES: frozenset({_P, _ST, _SE}),
    Resource.STUDY_INSTANCES: frozenset({_P, _SE, _I}),
    Resource.SERIES_INSTANCES: frozenset({_P, _I}),
    Resource.INSTANCES: frozenset({_P, _ST, _SE, _I}),
    Resource.PATIENTS: frozenset({_P}),
}
_RETURNED_LEVELS: Final = {
    Resource.STUDIES: frozenset({_P, _ST}),
    Resource.STUDY_SERIES: frozenset({_SE}),
    Resource.SERIES: frozenset({_P, _ST, _SE}),
    Resource.STUDY_INSTANCES: frozenset({_SE, _I}),
    Resource.SERIES_INSTANCES: frozenset({_I}),
    Resource.INSTANCES: frozenset({_P, _ST, _SE, _I}),
    Resource.PATIENTS: frozenset({_P}),
}


@dataclass(frozen=True, slots=True)
class Key:
    """A supported match key: its tag path, name (keyword or dotted path), VR and level."""

    path: tuple[int, ...]
    name: str
    vr: str
    level: Level
    #: the indexed value is multi-valued (backslash-joined): a match on any value (QIDO-13)
    multi: bool = False

    @property
    def tag(self) -> int:
        return self.path[0]


def _key(name: str, vr: str, level: Level, *, multi: bool = False) -> Key:
    path = tuple(int(tag_for_keyword(part) or 0) for part in name.split("."))
    assert all(path), name
    return Key(path, name, vr, level, multi)


#: every match key with an index column (QIDO-04/05/12/13/26), by name
KEYS: Final[dict[str, Key]] = {
    k.name: k
    for k in (
        _key("PatientID", "LO", _P),
        _key("PatientName", "PN", _P),
        _key("IssuerOfPatientID", "LO", _P),
        _key("PatientBirthDate", "DA", _P),
        _key("PatientSex", "CS", _P),
        _key("StudyInstanceUID", "UI", _ST),
        _key("AccessionNumber", "SH", _ST),
        _key("StudyID", "SH", _ST),
        _key("ReferringPhysicianName", "PN", _ST),
        _key("StudyDescription", "LO", _ST),
        _key("StudyDate", "DA", _ST),
        _key("StudyTime", "TM", _ST),
        _key("ModalitiesInStudy", "CS", _ST, multi=True),
        _key("NumberOfStudyRelatedSeries", "IS", _ST),
        _key("NumberOfStudyRelatedInstances", "IS", _ST),
        _key("SeriesInstanceUID", "UI", _SE),
        _key("Modality", "CS", _SE),
        _key("SeriesNumber", "IS", _SE),
        _key("SeriesDescription", "LO", _SE),
        _key("SeriesDate", "DA", _SE),
        _key("SeriesTime", "TM", _SE),
        _key("BodyPartExamined", "CS", _SE),
        _key("PerformedProcedureStepStartDate", "DA", _SE),
        _key("PerformedProcedureStepStartTime", "TM", _SE),
        _key("RequestAttributesSequence.ScheduledProcedureStepID", "SH", _SE, multi=True),
        _key("RequestAttributesSequence.RequestedProcedureID", "SH", _SE, multi=True),
        _key("NumberOfSeriesRelatedInstances", "IS", _SE),
        _key("SOPInstanceUID", "UI", _I),
        _key("SOPClassUID", "UI", _I),
        _key("InstanceNumber", "IS", _I),
        _key("Rows", "US", _I),
        _key("Columns", "US", _I),
        _key("BitsAllocated", "US", _I),
        _key("NumberOfFrames", "IS", _I),
    )
}
_KEYS_BY_PATH: Final = {k.path: k for k in KEYS.values()}
#: DA key -> TM key pairs matched as one date-time range when both are ranges (QIDO-11)
DATE_TIME_PAIRS: Final = {
    "StudyDate": "StudyTime",
    "SeriesDate": "SeriesTime",
    "PerformedProcedureStepStartDate": "PerformedProcedureStepStartTime",
}
#: computed attributes (QIDO-26) and the level whose objects carry them
COMPUTED_TAGS: Final = {
    0x00080061: _ST,  # ModalitiesInStudy
    0x00201206: _ST,  # NumberOfStudyRelatedSeries
    0x00201208: _ST,  # NumberOfStudyRelatedInstances
    0x00201209: _SE,  # NumberOfSeriesRelatedInstances
}
#: attributes of every result object, whatever its level (QIDO-21..23)
EVERY_LEVEL_TAGS: Final = frozenset({0x00080005, 0x00080056, 0x00080201, 0x00081190})

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
    """Wildcard matching (C.2.2.2.4): ``*`` any run, ``?`` one character.

    ``folded``: letters match whatever their case (ASCII letters on SQLite), an extension for
    the pages' "contains" searches; QIDO's own matching is case-sensitive.
    """

    pattern: str
    folded: bool = False


@dataclass(frozen=True, slots=True)
class ValueList:
    """List of values (UID list matching C.2.2.2.2; ModalitiesInStudy QIDO-13): any of them."""

    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DateRange:
    """Range matching on DA (C.2.2.2.5), bounds inclusive; a single date has low == high."""

    low: date | None
    high: date | None


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Range matching on TM, bounds as normalised ``HHMMSS.ffffff`` text, inclusive.

    A partial bound covers its whole precision: ``10-1130`` is 10:00:00 to 11:30:59.999999.
    """

    low: str | None
    high: str | None


@dataclass(frozen=True, slots=True)
class DateTimeRange:
    """A DA and a TM range matched as one date-time range (PS3.18 §8.3.4.1.1, QIDO-11)."""

    low: tuple[date, str] | None
    high: tuple[date, str] | None
    #: the name of the TM key matched with this DA key
    time_key: str


@dataclass(frozen=True, slots=True)
class Number:
    """Single value matching on an integer (IS, US)."""

    value: int


@dataclass(frozen=True, slots=True)
class FuzzyName:
    """Fuzzy PN matching (QIDO-14): every word is the prefix of some name component.

    Words are normalised (upper case, accents stripped); their order does not matter.
    """

    words: tuple[str, ...]


Matcher = (
    Universal
    | Single
    | Wildcard
    | ValueList
    | DateRange
    | TimeRange
    | DateTimeRange
    | Number
    | FuzzyName
)


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


#: the study keys a study search may be ordered by (each has an index column to walk)
SORT_KEYS: Final = frozenset(
    {"StudyDate", "PatientName", "PatientID", "AccessionNumber", "StudyDescription"}
)


@dataclass(frozen=True, slots=True)
class SortOrder:
    """The order of a study search other than QIDO's (StudyDate newest first): an extension of
    the web pages' study list (PS3.18 defines no sorting). One of :data:`SORT_KEYS`, ties
    broken in the same direction by the index's own order.

    >>> SortOrder("PatientName", descending=True).key
    'PatientName'
    >>> SortOrder("PatientSex")
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: a study list cannot be sorted by 'PatientSex'
    """

    key: str
    descending: bool = False

    def __post_init__(self) -> None:
        if self.key not in SORT_KEYS:
            raise BadRequest(f"a study list cannot be sorted by {self.key[:64]!r}")


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed search: filters by key name, returned attributes, paging, warnings."""

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
    resource: Resource = Resource.STUDIES
    #: the UIDs of the request path (``/studies/{study}/series/{series}/...``)
    study_uid: str | None = None
    series_uid: str | None = None
    #: a study search's order when not the resource's own (:class:`SortOrder`)
    order: SortOrder | None = None


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


def parse_time_range(value: str, name: str, *, ordered: bool = True) -> TimeRange:
    """A TM value or range, partial precision allowed (QIDO-10); else :class:`BadRequest`.

    A single value matches every time within its precision. ``ordered=False`` allows a low bound
    after the high one (it is then half of a combined date-time range, QIDO-11).

    >>> parse_time_range("10", "StudyTime")
    TimeRange(low='100000.000000', high='105959.999999')
    >>> parse_time_range("0800-173000.5", "StudyTime")
    TimeRange(low='080000.000000', high='173000.599999')
    >>> parse_time_range("-12", "StudyTime").low is None
    True
    >>> parse_time_range("25", "StudyTime")
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: StudyTime: invalid time or time range '25'
    """
    error = BadRequest(f"{name}: invalid time or time range {value[:64]!r}")
    parts = value.split("-")
    if len(parts) == 1:
        parts = [value, value]
    if len(parts) != 2 or parts == ["", ""]:
        raise error
    low = normalize_tm(parts[0]) if parts[0] else None
    high = normalize_tm_upper(parts[1]) if parts[1] else None
    if (parts[0] and low is None) or (parts[1] and high is None):
        raise error
    if ordered and low is not None and high is not None and low > high:
        raise error
    return TimeRange(low, high)


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


def fuzzy_words(value: str) -> tuple[str, ...]:
    """The normalised words of a fuzzy PN query: split on ``^``, ``=``, spaces and commas.

    Wildcard characters are dropped: every word is a prefix already.

    >>> fuzzy_words("jürgen^Mül*"), fuzzy_words("  "), fuzzy_words("van der^Berg")
    (('JURGEN', 'MUL'), (), ('VAN', 'DER', 'BERG'))
    """
    text = normalize_pn(value.replace("*", " ").replace("?", " "))
    return tuple(w for w in re.split(r"[\^=\s,]+", text) if w)


def _matcher(key: Key, value: str, *, fuzzy: bool) -> Matcher:
    value = value.strip(" ")
    if value in ("", "*"):
        return Universal()
    name = key.name
    if "\x00" in value:
        raise BadRequest(f"{name}: NUL character in value")
    if len(value) > MAX_VALUE_LENGTH:
        raise BadRequest(f"{name}: value longer than {MAX_VALUE_LENGTH} characters")
    if key.vr == "UI":
        uids = split_list(value)
        if len(uids) > MAX_LIST_ITEMS:
            raise BadRequest(f"{name}: more than {MAX_LIST_ITEMS} UIDs in the list")
        bad = [u for u in uids if not is_valid_uid(u)]
        if not uids or bad:
            raise BadRequest(f"{name}: invalid UID list")
        return ValueList(uids)
    if key.vr == "DA":
        return parse_date_range(value, name)
    if key.vr == "TM":
        return parse_time_range(value, name, ordered=False)
    if key.vr in ("IS", "US"):
        text = value.strip()
        # IS has up to 12 characters (PS3.5 Table 6.2-1): -99999999999 to 999999999999
        if not re.fullmatch(r"[+-]?[0-9]{1,12}", text, re.ASCII):
            raise BadRequest(f"{name}: invalid integer {value[:64]!r}")
        return Number(int(text))
    if name == "ModalitiesInStudy":
        codes = split_list(value)
        if len(codes) > MAX_LIST_ITEMS:
            raise BadRequest(f"{name}: more than {MAX_LIST_ITEMS} values in the list")
        if any("*" in c or "?" in c for c in codes):
            if len(codes) == 1:
                return Wildcard(codes[0])
            raise BadRequest(f"{name}: wildcards are not allowed in a list of values")
        return ValueList(codes)
    if key.vr == "PN" and fuzzy:
        words = fuzzy_words(value)
        return FuzzyName(words) if words else Universal()
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


def _tag_level(tag: int) -> Level | None:
    if tag in COMPUTED_TAGS:
        return COMPUTED_TAGS[tag]
    return level_of(tag)


def _combine_date_time(filters: dict[str, Matcher]) -> None:
    """QIDO-11: a DA and TM range of one pair become one :class:`DateTimeRange` on the DA key."""
    for date_key, time_key in DATE_TIME_PAIRS.items():
        d, t = filters.get(date_key), filters.get(time_key)
        if not isinstance(d, DateRange) or not isinstance(t, TimeRange):
            continue
        low = (d.low, t.low or "000000.000000") if d.low is not None else None
        high = (d.high, t.high or "235960.999999") if d.high is not None else None
        if low is not None and high is not None and low > high:
            raise BadRequest(f"{date_key}/{time_key}: the date-time range is empty")
        filters[date_key] = DateTimeRange(low, high, time_key)
        filters[time_key] = Universal()
    check_time_ranges(filters)


def check_time_ranges(filters: dict[str, Matcher]) -> None:
    """A TM range not combined with its date (QIDO-11) must not run backwards."""
    for name, matcher in filters.items():
        if (
            isinstance(matcher, TimeRange)
            and matcher.low
            and matcher.high
            and matcher.low > matcher.high
        ):
            raise BadRequest(f"{name}: invalid time range (the low bound is after the high)")


def key_at(path: tuple[int, ...]) -> Key | None:
    """The match key with an index column at ``path`` (a tag, or a sequence's tag and the tag
    inside its item), or ``None``.

    >>> key_at((0x00100010,)).name, key_at((0x00080060,)).level
    ('PatientName', <Level.SERIES: 'SERIES'>)
    >>> key_at((0x00400275, 0x00401001)).name
    'RequestAttributesSequence.RequestedProcedureID'
    >>> key_at((0x00280030,)) is None
    True
    """
    return _KEYS_BY_PATH.get(path)


def matcher_for(key: Key, value: str) -> Matcher:
    """The matcher of one match key value (PS3.4 §C.2.2.2), as QIDO-RS reads it: what a C-FIND
    identifier shares with QIDO-RS (one matching engine); :class:`BadRequest` if invalid.

    >>> matcher_for(KEYS["StudyDate"], "20240101-")
    DateRange(low=datetime.date(2024, 1, 1), high=None)
    >>> matcher_for(KEYS["StudyInstanceUID"], "1.2.3\\\\1.2.4")
    ValueList(values=('1.2.3', '1.2.4'))
    """
    return _matcher(key, value, fuzzy=False)


def parse_qido(
    params: Iterable[tuple[str, str]],
    *,
    level: Level = Level.STUDY,
    resource: Resource | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Query:
    """Read QIDO-RS query parameters for a search of ``resource`` (default: by ``level``).

    >>> q = parse_qido([("PatientName", "*mul*"), ("00080020", "20240101-"), ("limit", "5")])
    >>> q.filters["PatientName"], q.filters["StudyDate"].low, q.limit
    (Wildcard(pattern='*mul*', folded=False), datetime.date(2024, 1, 1), 5)
    >>> parse_qido([("Modality", "CT")]).warnings
    ('Ignored attributes not supported at this level: Modality',)
    >>> parse_qido([("PatientID", "1"), ("00100020", "2")])
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: 00100020 (PatientID): attribute given more than once
    """
    if resource is None:
        resource = {
            Level.STUDY: Resource.STUDIES,
            Level.SERIES: Resource.SERIES,
            Level.INSTANCE: Resource.INSTANCES,
        }.get(level, Resource.STUDIES)
    allowed = resource.match_levels
    params = list(params)
    fuzzy = False
    for name, value in params:
        if name == "fuzzymatching":
            if value not in ("true", "false"):
                raise BadRequest("fuzzymatching must be 'true' or 'false'")
            fuzzy = value == "true"
    filters: dict[str, Matcher] = {}
    seen: set[tuple[int, ...]] = set()
    include: set[int] = set()
    ignored: list[str] = []
    warnings: list[str] = []
    includefields: list[str] = []
    limit: int | None = None
    offset = 0
    for name, value in params:
        if name in _RESERVED:
            if name == "includefield":
                includefields.append(value)
            elif name == "limit":
                limit = parse_unsigned(value, name)
            elif name == "offset":
                offset = parse_unsigned(value, name)
            elif name == "fuzzymatching":
                pass
            elif value not in ("true", "false"):
                raise BadRequest(f"{name} must be 'true' or 'false'")
            elif value == "true":
                warnings.append(
                    f"The {name} parameter is not supported. "
                    "Only literal matching has been performed."
                )
            continue
        parts = name.split(".")
        tags = [parse_tag(part) for part in parts]
        if any(t is None for t in tags) or len(parts) > 8:
            raise BadRequest(f"{name}: unknown attribute or query parameter")
        path = tuple(t for t in tags if t is not None)
        if path in seen:
            raise BadRequest(f"{name} ({keyword_of(path[0])}): attribute given more than once")
        seen.add(path)
        key = _KEYS_BY_PATH.get(path)
        if key is None or key.level not in allowed:
            ignored.append(name)
            continue
        filters[key.name] = _matcher(key, value, fuzzy=fuzzy)
        include.add(key.tag)
    _combine_date_time(filters)
    tags_included, include_all = _includefields(includefields)
    if ignored:
        warnings.append(
            "Ignored attributes not supported at this level: " + ", ".join(sorted(set(ignored)))
        )
    returned_levels = resource.returned_levels
    returned = frozenset(
        t
        for t in include | tags_included
        if t in EVERY_LEVEL_TAGS or _tag_level(t) in returned_levels
    )
    return Query(
        level=resource.level,
        filters=filters,
        include=returned,
        include_all=include_all,
        limit=limit,
        offset=offset,
        fuzzy=fuzzy,
        warnings=tuple(warnings),
        resource=resource,
        study_uid=study_uid,
        series_uid=series_uid,
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

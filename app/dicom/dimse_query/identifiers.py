"""C-FIND, C-MOVE and C-GET identifiers read into the typed query of QIDO-RS (PS3.4 §C.4.1.2,
§C.4.2.2, §C.4.3.2; see the package docstring for the rules)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from app.dicom.attributes import (
    ALL_LEVELS_TAGS,
    INSTANCE_TAGS,
    SERIES_TAGS,
    Level,
    in_study_object,
    level_of,
)
from app.dicom.dimse_query.charsets import character_sets, element_text
from app.dicom.dimse_query.models import (
    QUERY_RETRIEVE_LEVEL,
    SPECIFIC_CHARACTER_SET,
    UNIQUE_KEYS,
    IdentifierMismatch,
    InvalidIdentifier,
    Model,
)
from app.dicom.query import (
    Matcher,
    Query,
    Resource,
    Single,
    Universal,
    ValueList,
    Wildcard,
    check_time_ranges,
    key_at,
    keyword_of,
    matcher_for,
    vr_of,
)
from app.errors import BadRequest

__all__ = ["FindRequest", "RetrieveRequest", "ReturnKey", "parse_find", "parse_retrieve"]

_RETRIEVE_AE_TITLE: Final = 0x00080054
_INSTANCE_AVAILABILITY: Final = 0x00080056
#: keys of every level (PS3.4 §C.6.1.1.2: in every identifier, of no level of their own)
_EVERY_LEVEL: Final = frozenset(
    {
        SPECIFIC_CHARACTER_SET,
        QUERY_RETRIEVE_LEVEL,
        0x00080053,  # QueryRetrieveView
        _RETRIEVE_AE_TITLE,
        _INSTANCE_AVAILABILITY,
        0x00080201,  # TimezoneOffsetFromUTC
        0x00081190,  # RetrieveURL
        0x0040E011,  # RetrieveLocationUID
        0x00880130,  # StorageMediaFileSetID
        0x00880140,  # StorageMediaFileSetUID
    }
)
#: the every-level keys a match can carry (stored, computed, or set per match)
_EVERY_LEVEL_RETURNED: Final = ALL_LEVELS_TAGS | {
    QUERY_RETRIEVE_LEVEL,
    _RETRIEVE_AE_TITLE,
    _INSTANCE_AVAILABILITY,
    0x00081190,
}
#: computed keys (PS3.4 Tables C.6-1, C.6-5, C.6-6) and their level
_COMPUTED: Final[dict[int, Level]] = {
    0x00201200: Level.PATIENT,  # NumberOfPatientRelatedStudies
    0x00201202: Level.PATIENT,  # NumberOfPatientRelatedSeries
    0x00201204: Level.PATIENT,  # NumberOfPatientRelatedInstances
    0x00080061: Level.STUDY,  # ModalitiesInStudy
    0x00080062: Level.STUDY,  # SOPClassesInStudy (not kept: unsupported)
    0x00201206: Level.STUDY,  # NumberOfStudyRelatedSeries
    0x00201208: Level.STUDY,  # NumberOfStudyRelatedInstances
    0x00201209: Level.SERIES,  # NumberOfSeriesRelatedInstances
}
#: the computed keys the index keeps
_COMPUTED_RETURNED: Final = frozenset(_COMPUTED) - {0x00080062}
#: the resource a search at each level is (Resource.level and these agree)
_RESOURCES: Final = {
    Level.PATIENT: Resource.PATIENTS,
    Level.STUDY: Resource.STUDIES,
    Level.SERIES: Resource.SERIES,
    Level.INSTANCE: Resource.INSTANCES,
}
#: VRs on which several values make a list match (PS3.4 §C.2.2.2.2: UIDs; codes, like QIDO-13)
_LIST_VRS: Final = frozenset({"UI", "CS", "SH", "LO", "AE"})


@dataclass(frozen=True, slots=True)
class ReturnKey:
    """A key of the identifier, to be returned with each match.

    ``items`` is the item template of a sequence key: the tags its items keep (empty: the whole
    items, PS3.4 §C.2.2.2.6 universal sequence matching); None for other keys.
    """

    tag: int
    vr: str
    items: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class FindRequest:
    """A C-FIND identifier, read (:func:`parse_find`)."""

    model: Model
    level: Level
    query: Query
    #: the identifier's keys, returned with every match (QueryRetrieveLevel aside)
    keys: tuple[ReturnKey, ...]
    #: the optional keys not supported for matching or for existence (0xFF01)
    unsupported: tuple[str, ...]
    #: the request's SpecificCharacterSet (empty: the default repertoire)
    character_sets: tuple[str, ...]
    #: the PatientID and StudyInstanceUID asked for, when one each (for the audit trail)
    patient_id: str | None = None
    study_uid: str | None = None

    @property
    def pending_status(self) -> int:
        """0xFF00, or 0xFF01 when some optional keys are not supported (PS3.4 Table C.4-1)."""
        return 0xFF01 if self.unsupported else 0xFF00


@dataclass(frozen=True, slots=True)
class RetrieveRequest:
    """A C-MOVE or C-GET identifier, read (:func:`parse_retrieve`): the query that finds the
    studies, series or instances to send (PATIENT level: the patient's studies)."""

    model: Model
    level: Level
    query: Query
    patient_id: str | None = None
    study_uid: str | None = None


def _level(identifier: Dataset, model: Model) -> Level:
    raw = element_text(identifier, QUERY_RETRIEVE_LEVEL, ())
    if raw is None:
        raise IdentifierMismatch("QueryRetrieveLevel (0008,0052) missing", (QUERY_RETRIEVE_LEVEL,))
    names = {level.value: level for level in model.levels}
    level = names.get(raw) if isinstance(raw, str) else None
    if level is None:
        shown = raw if isinstance(raw, str) else "\\".join(raw)
        raise IdentifierMismatch(
            f"QueryRetrieveLevel {shown[:16]!r} is not a {model} level", (QUERY_RETRIEVE_LEVEL,)
        )
    return level


def _key_level(tag: int, model: Model) -> Level | None:
    """The level a key belongs to in ``model`` (patient keys are study keys in Study Root)."""
    level = _COMPUTED.get(tag) or level_of(tag)
    if level is Level.PATIENT and model is Model.STUDY_ROOT:
        return Level.STUDY
    return level


def _stored(tag: int, level: Level) -> bool:
    """Whether the result objects of a search at ``level`` hold ``tag`` (or compute it)."""
    if tag in _EVERY_LEVEL_RETURNED:
        return True
    if level is Level.PATIENT:
        return level_of(tag) is Level.PATIENT or _COMPUTED.get(tag) is Level.PATIENT
    if tag in _COMPUTED_RETURNED:
        return _COMPUTED[tag] is not Level.PATIENT
    if in_study_object(tag):
        return True
    if level is Level.STUDY:
        return False
    return tag in SERIES_TAGS or (level is Level.INSTANCE and tag in INSTANCE_TAGS)


def _name(tag: int) -> str:
    keyword = keyword_of(tag)
    return keyword if not keyword[0].isdigit() else f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _matcher(tag: int, path: tuple[int, ...], vr: str, value: str | list[str]) -> Matcher | None:
    """The matcher of a key's value, or None when the key has no index column."""
    key = key_at(path)
    if key is None:
        return None
    if isinstance(value, str):
        return matcher_for(key, value)
    if vr == "UI" or key.name == "ModalitiesInStudy":
        return matcher_for(key, "\\".join(value))
    if vr in _LIST_VRS and not any("*" in v or "?" in v for v in value):
        # several values of a code or ID: any of them (as QIDO-13 for ModalitiesInStudy)
        return ValueList(tuple(v for v in value if v))
    raise InvalidIdentifier(
        f"{_name(tag)}: several values are only a list match for UIDs and codes", (tag,)
    )


def _read_matcher(
    tag: int, path: tuple[int, ...], vr: str, value: str | list[str]
) -> Matcher | None:
    """:func:`_matcher`, its refusals as :class:`InvalidIdentifier` naming the key."""
    try:
        return _matcher(tag, path, vr, value)
    except InvalidIdentifier:
        raise
    except BadRequest as exc:
        raise InvalidIdentifier(exc.message, (path[0],)) from None


def _key_name(path: tuple[int, ...]) -> str:
    key = key_at(path)
    assert key is not None  # only called for paths that have a matcher
    return key.name


def _is_single(matcher: Matcher | None) -> bool:
    return isinstance(matcher, Single) or (
        isinstance(matcher, ValueList) and len(matcher.values) == 1
    )


def _single_value(matcher: Matcher | None) -> str | None:
    if isinstance(matcher, Single):
        return matcher.value
    if isinstance(matcher, ValueList) and len(matcher.values) == 1:
        return matcher.values[0]
    return None


@dataclass(slots=True)
class _Reading:
    """What :func:`_read_keys` collects from an identifier."""

    filters: dict[str, Matcher]
    keys: list[ReturnKey]
    unsupported: list[str]
    #: the matcher of each unique key given (by tag), universal ones included
    unique: dict[int, Matcher | None]


def _read_keys(
    identifier: Dataset, model: Model, level: Level, encodings: Sequence[str]
) -> _Reading:
    order = model.levels.index(level)
    reading = _Reading({}, [], [], {})
    for tag_ in _tags(identifier):
        tag = int(tag_)
        if tag & 0xFFFF == 0 or tag in (QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET):
            continue  # group lengths; the level and the character set are read apart
        vr = _vr(identifier, tag)
        if tag in _EVERY_LEVEL:
            reading.keys.append(ReturnKey(tag, vr))
            if not _stored(tag, level):
                reading.unsupported.append(_name(tag))
            continue
        key_level = _key_level(tag, model) if not tag_.is_private else None
        if key_level is not None and model.levels.index(key_level) > order:
            raise IdentifierMismatch(
                f"{_name(tag)} is of the {key_level} level; the query is at the {level} level",
                (tag,),
            )
        if vr == "SQ":
            reading.keys.append(_sequence_key(identifier, tag, level, encodings, reading))
            continue
        value = element_text(identifier, tag, encodings)
        matcher: Matcher | None = Universal()
        if value is not None:
            matcher = _read_matcher(tag, (tag,), vr, value)
            if matcher is None:
                reading.unsupported.append(_name(tag))  # a match key with no index column
            elif not isinstance(matcher, Universal):
                reading.filters[_key_name((tag,))] = matcher
        if tag in UNIQUE_KEYS.values():
            reading.unique[tag] = matcher
        if not _stored(tag, level):
            reading.unsupported.append(_name(tag))  # no value to return
        reading.keys.append(ReturnKey(tag, vr))
    return reading


def _tags(ds: Dataset) -> list[BaseTag]:
    """The tags of ``ds``, its raw elements left raw (iterating a Dataset converts each)."""
    return list(ds.keys())


def _vr(ds: Dataset, tag: int) -> str:
    elem = ds.get_item(tag)
    vr = getattr(elem, "VR", None)
    return str(vr) if vr else vr_of(tag)


def _sequence_key(
    identifier: Dataset, tag: int, level: Level, encodings: Sequence[str], reading: _Reading
) -> ReturnKey:
    """A sequence key: its item's keys are returned, and matched where indexed (PS3.4
    §C.2.2.2.6: one item at most)."""
    items = identifier[tag].value or []
    if len(items) > 1:
        raise InvalidIdentifier(f"{_name(tag)}: a sequence key holds one item at most", (tag,))
    template: list[int] = []
    if items:
        item = items[0]
        for inner_ in _tags(item):
            inner = int(inner_)
            if inner & 0xFFFF == 0:
                continue
            template.append(inner)
            value = element_text(item, inner, encodings)
            if value is None:
                continue
            matcher = _read_matcher(inner, (tag, inner), _vr(item, inner), value)
            if matcher is None:
                reading.unsupported.append(f"{_name(tag)}.{_name(inner)}")
            elif not isinstance(matcher, Universal):
                reading.filters[_key_name((tag, inner))] = matcher
    if not _stored(tag, level):
        reading.unsupported.append(_name(tag))
    return ReturnKey(tag, "SQ", tuple(template))


def _require_unique_keys(model: Model, level: Level, unique: Mapping[int, Matcher | None]) -> None:
    """Hierarchical search (PS3.4 §C.4.1.3.1.1): every level above carries its unique key,
    as a single value."""
    for above in model.levels[: model.levels.index(level)]:
        tag = UNIQUE_KEYS[above]
        if not _is_single(unique.get(tag)):
            raise IdentifierMismatch(
                f"{_name(tag)}: one value needed above the {level} level", (tag,)
            )


def parse_find(identifier: Dataset, model: Model) -> FindRequest:
    """Read a C-FIND identifier of ``model`` into the query the index runs (module docstring).

    :class:`IdentifierMismatch` (0xA900) for an identifier that does not fit the model,
    :class:`InvalidIdentifier` (0xC000) for values that cannot be matched.

    >>> ds = Dataset()
    >>> ds.QueryRetrieveLevel, ds.PatientName, ds.StudyDate = "STUDY", "DOE*", "20240101-"
    >>> ds.StudyInstanceUID = ""
    >>> request = parse_find(ds, Model.STUDY_ROOT)
    >>> request.query.filters["PatientName"], request.query.filters["StudyDate"].high
    (Wildcard(pattern='DOE*', folded=False), None)
    >>> ds.Modality = "CT"
    >>> try:
    ...     parse_find(ds, Model.STUDY_ROOT)
    ... except IdentifierMismatch as exc:
    ...     print(exc.dimse_status, exc)
    43264 Modality is of the SERIES level; the query is at the STUDY level
    """
    terms = character_sets(identifier)
    level = _level(identifier, model)
    reading = _read_keys(identifier, model, level, terms)
    _require_unique_keys(model, level, reading.unique)
    try:
        check_time_ranges(reading.filters)
    except BadRequest as exc:
        raise InvalidIdentifier(exc.message) from None
    keys = _with_unique_keys(reading.keys, model, level)
    query = Query(
        level=level,
        filters=reading.filters,
        include=frozenset(k.tag for k in keys),
        resource=_RESOURCES[level],
    )
    return FindRequest(
        model,
        level,
        query,
        tuple(keys),
        tuple(dict.fromkeys(reading.unsupported)),
        terms,
        patient_id=_single_value(reading.unique.get(UNIQUE_KEYS[Level.PATIENT])),
        study_uid=_single_value(reading.unique.get(UNIQUE_KEYS[Level.STUDY])),
    )


def _with_unique_keys(keys: list[ReturnKey], model: Model, level: Level) -> list[ReturnKey]:
    """The keys, with the unique keys of the query level and those above added when missing:
    a match always says which object it is (PS3.4 §C.4.1.2.2)."""
    present = {k.tag for k in keys}
    top = model.levels.index(level) + 1
    for above in model.levels[:top]:
        tag = UNIQUE_KEYS[above]
        if tag not in present:
            keys.append(ReturnKey(tag, vr_of(tag)))
    return keys


def parse_retrieve(identifier: Dataset, model: Model) -> RetrieveRequest:
    """Read a C-MOVE or C-GET identifier of ``model`` (PS3.4 §C.4.2.2.1, §C.4.3.2.1).

    The unique key of the retrieve level is required (a single value or, for UIDs, a list);
    the unique keys of the levels above may be given and then restrict what is found; any
    other key of a level at or above the retrieve level is ignored, a key of a level below is
    refused (0xA900). PATIENT level retrieves every study of the patient.

    >>> ds = Dataset(); ds.QueryRetrieveLevel = "SERIES"
    >>> ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", ["1.2.3.4", "1.2.3.5"]
    >>> request = parse_retrieve(ds, Model.STUDY_ROOT)
    >>> request.query.level, request.query.filters["SeriesInstanceUID"]
    (<Level.SERIES: 'SERIES'>, ValueList(values=('1.2.3.4', '1.2.3.5')))
    """
    terms = character_sets(identifier)
    level = _level(identifier, model)
    order = model.levels.index(level)
    filters: dict[str, Matcher] = {}
    for tag_ in _tags(identifier):
        tag = int(tag_)
        if tag & 0xFFFF == 0 or tag in _EVERY_LEVEL or tag_.is_private:
            continue
        key_level = _key_level(tag, model)
        if key_level is not None and model.levels.index(key_level) > order:
            raise IdentifierMismatch(
                f"{_name(tag)} is of the {key_level} level; the retrieve is at the {level} level",
                (tag,),
            )
        if tag not in UNIQUE_KEYS.values():
            continue  # C-MOVE/C-GET match on unique keys only (PS3.4 §C.4.2.2.1)
        value = element_text(identifier, tag, terms)
        if value is None:
            continue
        matcher = _read_matcher(tag, (tag,), _vr(identifier, tag), value)
        if matcher is None or isinstance(matcher, Wildcard | Universal):
            raise InvalidIdentifier(f"{_name(tag)}: a retrieve names its objects exactly", (tag,))
        filters[_key_name((tag,))] = matcher
    own = key_at((UNIQUE_KEYS[level],))
    assert own is not None
    if own.name not in filters:
        raise IdentifierMismatch(
            f"{own.name} needed to retrieve at the {level} level", (UNIQUE_KEYS[level],)
        )
    found = Level.STUDY if level is Level.PATIENT else level
    query = Query(level=found, filters=filters, resource=_RESOURCES[found])
    return RetrieveRequest(
        model,
        level,
        query,
        patient_id=_single_value(filters.get("PatientID")),
        study_uid=_single_value(filters.get("StudyInstanceUID")),
    )

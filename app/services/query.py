"""Searches (QIDO-RS and C-FIND): a :class:`~app.dicom.query.Query` in, DICOM JSON out.

Each result merges the stored objects of the levels its resource returns (QIDO-24: ``/series``
adds the study, ``/studies/{study}/instances`` the series, ``/instances`` both) with the computed
attributes of QIDO-26 (the counts, ModalitiesInStudy, InstanceAvailability and a RetrieveURL of
the result's own level, built from the public base), with every required return key of
QIDO-21..23 present (empty when unknown, QIDO-25). Unless ``includefield=all``, the object is then
filtered to the default attributes of its levels plus the match keys and ``includefield`` tags
(QIDO-16/24). The front end serialises with sorted keys (JSON-01).

Every search takes an optional :class:`~app.dicom.query.StudyRestriction`: a scoped caller only
ever sees studies, series and instances of the studies in its grant (applied in SQL).

A C-FIND has no paging: :meth:`QueryService.find` reads page after page (each on a connection
held for that page only) until a short one, never counting. A patient (the PATIENT level of
C-FIND, which DICOMweb lacks) is the patient attributes of its most recently indexed study with
the patient's counts (PS3.4 Table C.6-1).
"""

from collections.abc import AsyncGenerator
from typing import Any, Final, NamedTuple

import orjson

from app.dicom.attributes import ALL_LEVELS_TAGS, Level, level_of
from app.dicom.query import Query, StudyRestriction, vr_of
from app.dicom.target import Target
from app.index.db import Database
from app.index.search import Hit, search

__all__ = [
    "DEFAULT_INSTANCE_TAGS",
    "DEFAULT_SERIES_TAGS",
    "DEFAULT_STUDY_TAGS",
    "QueryService",
    "SearchResults",
    "StudyResults",
]

#: QIDO-21 study return keys with their VR: R and U keys always, C keys when known
_REQUIRED_STUDY: Final = {
    0x00080020: "DA",  # StudyDate
    0x00080030: "TM",  # StudyTime
    0x00080050: "SH",  # AccessionNumber
    0x00080061: "CS",  # ModalitiesInStudy
    0x00080090: "PN",  # ReferringPhysicianName
    0x00100010: "PN",  # PatientName
    0x00100020: "LO",  # PatientID
    0x00100030: "DA",  # PatientBirthDate
    0x00100040: "CS",  # PatientSex
    0x00200010: "SH",  # StudyID
    0x00201206: "IS",  # NumberOfStudyRelatedSeries
    0x00201208: "IS",  # NumberOfStudyRelatedInstances
    0x0020000D: "UI",  # StudyInstanceUID
}
#: QIDO-22 series return keys (R and U)
_REQUIRED_SERIES: Final = {
    0x00080060: "CS",  # Modality
    0x00200011: "IS",  # SeriesNumber
    0x0020000E: "UI",  # SeriesInstanceUID
    0x00201209: "IS",  # NumberOfSeriesRelatedInstances
}
#: C-FIND patient return keys (PS3.4 Table C.6-1, R and U)
_REQUIRED_PATIENT: Final = {
    0x00100010: "PN",  # PatientName
    0x00100020: "LO",  # PatientID
}
#: the patient counts of PS3.4 Table C.6-1
NUMBER_OF_PATIENT_RELATED_STUDIES: Final = 0x00201200
NUMBER_OF_PATIENT_RELATED_SERIES: Final = 0x00201202
NUMBER_OF_PATIENT_RELATED_INSTANCES: Final = 0x00201204
#: QIDO-23 instance return keys (R and U)
_REQUIRED_INSTANCE: Final = {
    0x00080016: "UI",  # SOPClassUID
    0x00080018: "UI",  # SOPInstanceUID
    0x00200013: "IS",  # InstanceNumber
}
_CONDITIONAL: Final = frozenset(
    {
        0x00080005,  # SpecificCharacterSet
        0x00080056,  # InstanceAvailability
        0x00080201,  # TimezoneOffsetFromUTC
        0x00081190,  # RetrieveURL
    }
)
#: returned by default: QIDO-21 (R, U and C)
DEFAULT_STUDY_TAGS: Final = frozenset(_REQUIRED_STUDY) | _CONDITIONAL
#: returned by default: QIDO-22 (R, U and C)
DEFAULT_SERIES_TAGS: Final = (
    frozenset(_REQUIRED_SERIES)
    | _CONDITIONAL
    | {
        0x0008103E,  # SeriesDescription
        0x00400244,  # PerformedProcedureStepStartDate
        0x00400245,  # PerformedProcedureStepStartTime
        0x00400275,  # RequestAttributesSequence
    }
)
#: returned by default: QIDO-23 (R, U and C)
DEFAULT_INSTANCE_TAGS: Final = (
    frozenset(_REQUIRED_INSTANCE)
    | _CONDITIONAL
    | {
        0x00280010,  # Rows
        0x00280011,  # Columns
        0x00280100,  # BitsAllocated
        0x00280008,  # NumberOfFrames
    }
)


class SearchResults(NamedTuple):
    """One page of a search: the objects and the number of matches (a lower bound when not
    ``exact``: counting stopped at the service's ``count_limit``)."""

    items: list[dict[str, Any]]
    total: int
    exact: bool = True


StudyResults = SearchResults


class QueryService:
    """Read-only searches over the index.

    ``max_results`` caps study and series pages, ``max_instance_results`` instance pages
    (QIDO-17: a missing limit defaults to the cap, a larger one is reduced to it).
    ``count_limit`` bounds the work of counting the matches (0: always count them all).
    """

    def __init__(
        self,
        db: Database,
        *,
        max_results: int = 1000,
        max_instance_results: int = 10000,
        count_limit: int = 0,
    ) -> None:
        self._db = db
        self.max_results = max_results
        self.max_instance_results = max_instance_results
        self.count_limit = count_limit

    def page_cap(self, level: Level) -> int:
        """The most results one response of ``level`` may hold."""
        return self.max_instance_results if level is Level.INSTANCE else self.max_results

    async def search(
        self, query: Query, base_url: str, *, restrict: StudyRestriction | None = None
    ) -> SearchResults:
        """The page of results matching ``query`` (QIDO-17/18), and how many match in all."""
        cap = self.page_cap(query.level)
        limit = min(query.limit if query.limit is not None else cap, cap)
        # PostgreSQL's READ COMMITTED gives each statement its own snapshot inside a transaction
        # too: without one, the search saves the BEGIN and ROLLBACK round trips (SQLite keeps its
        # transaction: one snapshot for the page and the count)
        async with self._db.read(autocommit=True) as conn:
            hits, total, exact = await search(
                conn,
                query,
                limit=limit,
                offset=query.offset,
                restrict=restrict,
                count_limit=self.count_limit,
            )
        shape = _Shape(query)
        items = [_object(hit, query, base_url, shape) for hit in hits]
        return SearchResults(items, total, exact)

    async def find(
        self,
        query: Query,
        base_url: str,
        *,
        restrict: StudyRestriction | None = None,
        page_size: int | None = None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Every result matching ``query`` (a C-FIND: no paging, no count), page by page.

        ``query.limit`` and ``query.offset`` are ignored. The database is held for one page at a
        time (``page_size``, default the level's cap), so a slow reader holds no connection.
        """
        size = max(1, page_size or self.page_cap(query.level))
        shape = _Shape(query)
        offset = 0
        while True:
            async with self._db.read(autocommit=True) as conn:
                hits, _, _ = await search(
                    conn, query, limit=size, offset=offset, restrict=restrict, count=False
                )
            for hit in hits:
                yield _object(hit, query, base_url, shape)
            if len(hits) < size:
                return
            offset += size

    async def targets(
        self, query: Query, *, restrict: StudyRestriction | None = None
    ) -> list[Target]:
        """The studies, series or instances matching ``query`` (a study, series or instance
        level one), as retrieve targets: what a C-MOVE or C-GET identifier names."""
        found: list[Target] = []
        size = self.page_cap(query.level)
        offset = 0
        while True:
            async with self._db.read(autocommit=True) as conn:
                hits, _, _ = await search(
                    conn, query, limit=size, offset=offset, restrict=restrict, count=False
                )
            found.extend(Target(hit.study_uid, hit.series_uid, hit.sop_uid) for hit in hits)
            if len(hits) < size:
                return found
            offset += size

    async def search_studies(
        self, query: Query, base_url: str, *, restrict: StudyRestriction | None = None
    ) -> SearchResults:
        """A study-level search (``/studies``)."""
        assert query.level is Level.STUDY
        return await self.search(query, base_url, restrict=restrict)

    async def search_series(
        self, query: Query, base_url: str, *, restrict: StudyRestriction | None = None
    ) -> SearchResults:
        """A series-level search (``/series``, ``/studies/{study}/series``)."""
        assert query.level is Level.SERIES
        return await self.search(query, base_url, restrict=restrict)

    async def search_instances(
        self, query: Query, base_url: str, *, restrict: StudyRestriction | None = None
    ) -> SearchResults:
        """An instance-level search (``/instances`` and the two scoped instance resources)."""
        assert query.level is Level.INSTANCE
        return await self.search(query, base_url, restrict=restrict)


class _Shape:
    """What every object of one search looks like: computed once per query, not per result."""

    __slots__ = ("empty", "wanted")

    def __init__(self, query: Query) -> None:
        returned = query.resource.returned_levels
        required: dict[int, str] = {}
        wanted: set[int] = set(query.include) | {0x0020000D, 0x0020000E}
        if query.level is Level.PATIENT:
            required.update(_REQUIRED_PATIENT)
        if Level.STUDY in returned:
            required.update(_REQUIRED_STUDY)
            wanted |= DEFAULT_STUDY_TAGS
        if Level.SERIES in returned:
            required.update(_REQUIRED_SERIES)
            wanted |= DEFAULT_SERIES_TAGS
        if Level.INSTANCE in returned:
            required.update(_REQUIRED_INSTANCE)
            wanted |= DEFAULT_INSTANCE_TAGS
        if not query.include_all:
            for tag in query.include:
                required.setdefault(tag, vr_of(tag))
        #: attributes present even when unknown (QIDO-25), as (key, empty element)
        self.empty = tuple((f"{tag:08X}", vr) for tag, vr in required.items())
        #: keys kept, or None for includefield=all
        self.wanted = None if query.include_all else frozenset(f"{t:08X}" for t in wanted)


def _stored(data: bytes, wanted: frozenset[str] | None) -> dict[str, Any]:
    """A stored DICOM JSON object, reduced to the ``wanted`` keys (None: all of them)."""
    loaded: dict[str, Any] = orjson.loads(data)
    if wanted is None:
        return loaded
    return {key: value for key, value in loaded.items() if key in wanted}


def _is_patient_key(key: str) -> bool:
    tag = int(key, 16)
    return tag in ALL_LEVELS_TAGS or level_of(tag) is Level.PATIENT


def _patient(hit: Hit, shape: _Shape) -> dict[str, Any]:
    """A patient: the patient attributes of its latest study's object, and its counts."""
    assert hit.patient is not None
    wanted = shape.wanted
    loaded: dict[str, Any] = orjson.loads(hit.patient.attrs_json)
    obj = {
        key: value
        for key, value in loaded.items()
        if _is_patient_key(key) and (wanted is None or key in wanted)
    }
    obj[f"{NUMBER_OF_PATIENT_RELATED_STUDIES:08X}"] = {
        "vr": "IS",
        "Value": [hit.patient.num_studies],
    }
    obj[f"{NUMBER_OF_PATIENT_RELATED_SERIES:08X}"] = {"vr": "IS", "Value": [hit.patient.num_series]}
    obj[f"{NUMBER_OF_PATIENT_RELATED_INSTANCES:08X}"] = {
        "vr": "IS",
        "Value": [hit.patient.num_instances],
    }
    obj["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}
    for key, vr in shape.empty:
        if key not in obj:
            obj[key] = {"vr": vr}
    return obj


def _object(hit: Hit, query: Query, base_url: str, shape: _Shape) -> dict[str, Any]:
    if hit.patient is not None:
        return _patient(hit, shape)
    # every computed and required key below is wanted (the default tags of the returned levels
    # hold them), so only the stored objects are filtered
    wanted = shape.wanted
    obj: dict[str, Any] = {}
    study_url = f"{base_url}/studies/{hit.study_uid}"
    if hit.study is not None:
        obj = _stored(hit.study.attrs_json, wanted)
        obj["00201206"] = {"vr": "IS", "Value": [hit.study.num_series]}
        obj["00201208"] = {"vr": "IS", "Value": [hit.study.num_instances]}
        mods = hit.study.modalities
        obj["00080061"] = {"vr": "CS", "Value": list(mods)} if mods else {"vr": "CS"}
    if hit.series is not None:
        obj.update(_stored(hit.series.attrs_json, wanted))
        obj["00201209"] = {"vr": "IS", "Value": [hit.series.num_instances]}
    if hit.instance_json is not None:
        obj.update(_stored(hit.instance_json, wanted))
    if query.level is Level.STUDY:
        url = study_url
    elif query.level is Level.SERIES:
        url = f"{study_url}/series/{hit.series_uid}"
    else:
        url = f"{study_url}/series/{hit.series_uid}/instances/{hit.sop_uid}"
    obj["00081190"] = {"vr": "UR", "Value": [url]}
    obj["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}
    # the path UIDs of a scoped resource are known even when their level is not returned
    if hit.study is None:
        obj.setdefault("0020000D", {"vr": "UI", "Value": [hit.study_uid]})
    if hit.series is None and hit.series_uid is not None:
        obj.setdefault("0020000E", {"vr": "UI", "Value": [hit.series_uid]})
    for key, vr in shape.empty:
        if key not in obj:
            obj[key] = {"vr": vr}
    return obj

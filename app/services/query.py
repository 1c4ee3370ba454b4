"""Searches (QIDO-RS now, C-FIND later): a :class:`~app.dicom.query.Query` in, DICOM JSON out.

Each result is the stored study object (patient + study attributes, ``attrs_json``) merged with
the computed attributes of QIDO-26 (the counts, ModalitiesInStudy, InstanceAvailability and a
RetrieveURL built from the public base), with every required return key of QIDO-21 present (empty
when unknown, QIDO-25), then filtered to the default attributes plus the match keys and
``includefield`` (QIDO-16/24). Keys are sorted (JSON-01).
"""

from typing import Any, Final, NamedTuple

import orjson

from app.dicom.query import Query, StudyRestriction, vr_of
from app.index.db import Database
from app.index.search import StudyHit, search_studies

__all__ = ["DEFAULT_STUDY_TAGS", "QueryService", "StudyResults"]

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
#: returned by default: QIDO-21 (R, U and C)
DEFAULT_STUDY_TAGS: Final = frozenset(_REQUIRED_STUDY) | {
    0x00080005,  # SpecificCharacterSet
    0x00080056,  # InstanceAvailability
    0x00080201,  # TimezoneOffsetFromUTC
    0x00081190,  # RetrieveURL
}


class StudyResults(NamedTuple):
    """One page of a study search: the objects and the total number of matches."""

    items: list[dict[str, Any]]
    total: int


class QueryService:
    """Read-only searches over the index."""

    def __init__(self, db: Database, *, max_results: int = 1000) -> None:
        self._db = db
        self.max_results = max_results

    async def search_studies(
        self, query: Query, base_url: str, *, restrict: StudyRestriction | None = None
    ) -> StudyResults:
        """The page of studies matching ``query`` (QIDO-17/18), and how many match in all.

        The limit defaults to, and is capped at, ``max_results``.
        """
        limit = min(query.limit if query.limit is not None else self.max_results, self.max_results)
        async with self._db.read() as conn:
            hits, total = await search_studies(
                conn, query, limit=limit, offset=query.offset, restrict=restrict
            )
        return StudyResults([_study_object(hit, query, base_url) for hit in hits], total)


def _study_object(hit: StudyHit, query: Query, base_url: str) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads(hit.attrs_json)
    obj["00201206"] = {"vr": "IS", "Value": [hit.num_series]}
    obj["00201208"] = {"vr": "IS", "Value": [hit.num_instances]}
    obj["00080061"] = (
        {"vr": "CS", "Value": list(hit.modalities)} if hit.modalities else {"vr": "CS"}
    )
    obj["00081190"] = {"vr": "UR", "Value": [f"{base_url}/studies/{hit.study_uid}"]}
    obj["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}
    for tag, vr in _REQUIRED_STUDY.items():
        obj.setdefault(f"{tag:08X}", {"vr": vr})
    if not query.include_all:
        for tag in query.include:
            obj.setdefault(f"{tag:08X}", {"vr": vr_of(tag)})
        wanted = DEFAULT_STUDY_TAGS | query.include
        obj = {key: value for key, value in obj.items() if int(key, 16) in wanted}
    return dict(sorted(obj.items()))

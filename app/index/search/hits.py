"""A search's page of hits: the page statement, the count when the page does not tell, and
each row as a :class:`Hit` (its UIDs and the stored objects of the levels returned)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.dicom.attributes import Level
from app.dicom.query import Query, StudyRestriction
from app.index.search.plan import count_plan, page_plan
from app.index.search.statements import execute

__all__ = ["Hit", "PatientPart", "SeriesPart", "StudyPart", "search"]


@dataclass(frozen=True, slots=True)
class StudyPart:
    """The study a hit belongs to, with what its object needs besides stored JSON."""

    id: int
    num_series: int
    num_instances: int
    attrs_json: bytes
    modalities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SeriesPart:
    num_instances: int
    attrs_json: bytes


@dataclass(frozen=True, slots=True)
class PatientPart:
    """A patient (C-FIND PATIENT level): the stored object of its most recently indexed study
    (whose patient attributes are the patient's) and its counts (PS3.4 Table C.6-1)."""

    num_studies: int
    num_series: int
    num_instances: int
    attrs_json: bytes


@dataclass(frozen=True, slots=True)
class Hit:
    """One result: its UIDs and the stored objects of the levels the resource returns."""

    study_uid: str
    series_uid: str | None = None
    sop_uid: str | None = None
    study: StudyPart | None = None
    series: SeriesPart | None = None
    instance_json: bytes | None = None
    patient: PatientPart | None = None


async def search(
    conn: AsyncConnection,
    query: Query,
    *,
    limit: int,
    offset: int,
    restrict: StudyRestriction | None = None,
    count_limit: int = 0,
    count: bool = True,
) -> tuple[list[Hit], int, bool]:
    """The page ``[offset, offset + limit)`` of what matches ``query``, the total count, and
    whether that count is exact.

    The count query runs only when the page is full or empty past an offset: a short page
    already says how many match. With ``count_limit`` (never below ``offset + limit``) it stops
    counting past that many matches, and the total is then a lower bound (``exact`` false).
    Without ``count`` (a C-FIND reads page after page until a short one) it never runs: the
    total is then what the pages so far hold, a lower bound when the page is full.
    """
    level = query.level
    sqlite = conn.dialect.name == "sqlite"
    want_study = Level.STUDY in query.resource.returned_levels
    want_series = Level.SERIES in query.resource.returned_levels
    rows: Sequence[Any] = []
    if limit > 0:
        page = page_plan(query, limit=limit, offset=offset, sqlite=sqlite, restrict=restrict)
        rows = (await execute(conn, page)).all()
    exact = True
    if not count:
        total, exact = offset + len(rows), len(rows) < limit
    elif rows and len(rows) < limit:
        total = offset + len(rows)
    elif not rows and offset == 0 and limit > 0:
        total = 0
    else:
        cap = max(count_limit, offset + limit) if count_limit else 0
        counting = count_plan(query, sqlite=sqlite, restrict=restrict, cap=cap)
        total = (await execute(conn, counting)).scalar_one()
        if cap and total > cap:
            total, exact = cap, False
    if level is Level.PATIENT:
        return [_patient(r) for r in rows], total, exact
    hits = []
    for r in rows:
        study = series = None
        if want_study:
            mods = tuple(sorted(set(r.st_modalities.split(",")))) if r.st_modalities else ()
            study = StudyPart(r.st_id, r.st_series, r.st_instances, r.st_json, mods)
        if want_series:
            series = SeriesPart(r.se_instances, r.se_json)
        hits.append(
            Hit(
                study_uid=r.study_uid,
                series_uid=r.series_uid if level is not Level.STUDY else None,
                sop_uid=r.sop_uid if level is Level.INSTANCE else None,
                study=study,
                series=series,
                instance_json=r.instance_json if level is Level.INSTANCE else None,
            )
        )
    return hits, total, exact


def _patient(r: Any) -> Hit:
    part = PatientPart(
        int(r.pa_studies), int(r.pa_series or 0), int(r.pa_instances or 0), r.pa_json
    )
    return Hit(study_uid=r.study_uid, patient=part)

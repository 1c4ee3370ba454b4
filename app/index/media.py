"""Index look-ups for an export as a PS3.10 file-set (ZIP archive, directory): the instances of a
target with what their DICOMDIR records say of them, and the study and series attributes.

Each is one query per target (the attributes: per 500 UIDs), whatever the number of instances;
the records are built from these values alone (:mod:`app.dicom.dicomdir`), no blob is read.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select

from app.dicom.target import Target
from app.index.db import Database
from app.index.models import Instance, Series, Study
from app.index.retrieval import REF_COLUMNS, InstanceRef, TargetQuery, instance_ref

__all__ = ["MediaRow", "instance_metadata", "locate_media", "series_attributes", "study_attributes"]

#: UIDs per ``IN (...)`` (SQLite's default limit of bound parameters is far above)
_CHUNK: Final = 500


@dataclass(frozen=True, slots=True)
class MediaRow:
    """One instance of an export: where its blob is, and its SOP class and InstanceNumber."""

    ref: InstanceRef
    sop_class_uid: str
    instance_number: int | None


_MEDIA: Final = TargetQuery(*REF_COLUMNS, Instance.sop_class_uid, Instance.instance_number)


async def locate_media(db: Database, target: Target) -> list[MediaRow]:
    """The instances of a study or series in WADO-01 order (empty if unknown)."""
    rows = await _MEDIA.rows(db, target)
    width = len(REF_COLUMNS)
    return [MediaRow(instance_ref(row), row[width], row[width + 1]) for row in rows]


async def _by_uid(db: Database, key: Any, value: Any, uids: Collection[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    wanted: Sequence[str] = sorted(set(uids))
    async with db.read() as conn:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = await conn.execute(select(key, value).where(key.in_(chunk)))
            found.update((uid, bytes(data)) for uid, data in rows.all())
    return found


async def study_attributes(db: Database, study_uids: Collection[str]) -> dict[str, bytes]:
    """The stored study-level DICOM JSON (patient and study attributes) of each study."""
    return await _by_uid(db, Study.study_uid, Study.attrs_json, study_uids)


async def series_attributes(db: Database, series_uids: Collection[str]) -> dict[str, bytes]:
    """The stored series-level DICOM JSON of each series."""
    return await _by_uid(db, Series.series_uid, Series.attrs_json, series_uids)


async def instance_metadata(db: Database, sop_uids: Collection[str]) -> dict[str, bytes]:
    """The stored WADO-RS metadata (DICOM JSON, bulk data by reference) of each instance."""
    return await _by_uid(db, Instance.sop_uid, Instance.metadata_json, sop_uids)

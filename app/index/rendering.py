"""Index look-ups for rendered resources and thumbnails (PS3.18 §10.4.1.1.3-4, REND/THUMB).

One query per request, on the joins and WADO-01 order of :mod:`app.index.retrieval`, returning
what choosing and caching a rendering needs: the blob, its content hash (ETag, cache key), the SOP
class (image, SR, PDF) and the frame count, plus SeriesNumber/InstanceNumber for THUMB-02.
"""

from dataclasses import dataclass
from typing import Final

from app.dicom.target import Target
from app.index.db import Database
from app.index.models import Instance, Series
from app.index.retrieval import REF_COLUMNS, InstanceRef, TargetQuery, instance_ref


@dataclass(frozen=True, slots=True)
class RenderSource:
    """One instance as a rendering source."""

    ref: InstanceRef
    sha256: str
    sop_class_uid: str
    number_of_frames: int | None  # None: no pixel data
    series_number: int | None
    instance_number: int | None


_RENDER_SOURCES: Final = TargetQuery(
    *REF_COLUMNS,
    Instance.sha256,
    Instance.sop_class_uid,
    Instance.number_of_frames,
    Series.series_number,
    Instance.instance_number,
)


async def locate_render_sources(db: Database, target: Target) -> list[RenderSource]:
    """The target's instances in WADO-01 order (empty if unknown)."""
    rows = await _RENDER_SOURCES.rows(db, target)
    tail = slice(len(REF_COLUMNS), None)
    return [RenderSource(instance_ref(row), *row[tail]) for row in rows]

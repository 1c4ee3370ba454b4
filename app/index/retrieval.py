"""Index look-ups for WADO-RS retrieve (PS3.18 §10.4): the blobs of a study, series or instance.

One query per request, whatever the number of instances: the three levels are joined and filtered
by every UID given, so an instance under another series (or a series under another study) is simply
not found. Rows come in the order of WADO-01: SeriesNumber, then InstanceNumber, with the row ids
breaking ties (and placing missing numbers last) so the order is stable across databases.
"""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import Instance, Series, Study


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """Where one instance's bytes are, and how they are encoded."""

    study_uid: str
    series_uid: str
    sop_uid: str
    blob_key: str
    size: int
    transfer_syntax_uid: str


async def locate(
    conn: AsyncConnection,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[InstanceRef]:
    """The instances of a study, series or single instance, in WADO-01 order (empty if unknown)."""
    stmt = (
        select(
            Study.study_uid,
            Series.series_uid,
            Instance.sop_uid,
            Instance.blob_key,
            Instance.size,
            Instance.transfer_syntax_uid,
        )
        .select_from(Instance)
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Series.study_id)
        .where(Study.study_uid == study_uid)
    )
    if series_uid is not None:
        stmt = stmt.where(Series.series_uid == series_uid)
    if sop_uid is not None:
        stmt = stmt.where(Instance.sop_uid == sop_uid)
    stmt = stmt.order_by(
        Series.series_number.asc().nulls_last(),
        Series.id,
        Instance.instance_number.asc().nulls_last(),
        Instance.id,
    )
    rows = (await conn.execute(stmt)).all()
    return [InstanceRef(*row) for row in rows]

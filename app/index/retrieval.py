"""Index look-ups for WADO-RS retrieve (PS3.18 §10.4): blobs, metadata and frames of a target.

One query per request, whatever the number of instances: the three levels are joined and filtered
by every UID given, so an instance under another series (or a series under another study) is simply
not found. Rows come in the order of WADO-01: SeriesNumber, then InstanceNumber, with the row ids
breaking ties (and placing missing numbers last) so the order is stable across databases.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVarTuple

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import Instance, Series, Study

_Ts = TypeVarTuple("_Ts")


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """Where one instance's bytes are, and how they are encoded."""

    study_uid: str
    series_uid: str
    sop_uid: str
    blob_key: str
    size: int
    transfer_syntax_uid: str
    #: Image Pixel attributes the index keeps (None when absent): enough to know whether the
    #: instance has pixel data and a lower bound of its decoded size (NEG-07)
    rows: int | None = None
    columns: int | None = None
    bits_allocated: int | None = None
    number_of_frames: int | None = None  # None: no pixel data
    sha256: str = ""


#: the columns of an :class:`InstanceRef`, in its field order (a select starts with them)
REF_COLUMNS: Final = (
    Study.study_uid,
    Series.series_uid,
    Instance.sop_uid,
    Instance.blob_key,
    Instance.size,
    Instance.transfer_syntax_uid,
    Instance.rows,
    Instance.columns,
    Instance.bits_allocated,
    Instance.number_of_frames,
    Instance.sha256,
)


def instance_ref(row: Sequence[Any]) -> InstanceRef:
    """The :class:`InstanceRef` of a row that starts with :data:`REF_COLUMNS`."""
    return InstanceRef(*row[: len(REF_COLUMNS)])


def _untyped(rows: Sequence[Any]) -> Sequence[Sequence[Any]]:
    return rows


@dataclass(frozen=True, slots=True)
class MetadataRow:
    """One instance's stored WADO-RS metadata (relative BulkDataURIs) and its content hash."""

    sha256: str
    metadata_json: bytes


@dataclass(frozen=True, slots=True)
class FrameSource:
    """What a frame retrieve needs of one instance (FRM-01..05)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    blob_key: str
    transfer_syntax_uid: str
    number_of_frames: int | None  # None: no pixel data
    frame_index: bytes | None  # FrameIndex.to_json() as orjson bytes
    rows: int | None
    columns: int | None


def _target(
    stmt: Select[*_Ts], study_uid: str, series_uid: str | None, sop_uid: str | None
) -> Select[*_Ts]:
    """Join the three levels, keep the target's rows, in WADO-01 order."""
    stmt = (
        stmt.select_from(Instance)
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Series.study_id)
        .where(Study.study_uid == study_uid)
    )
    if series_uid is not None:
        stmt = stmt.where(Series.series_uid == series_uid)
    if sop_uid is not None:
        stmt = stmt.where(Instance.sop_uid == sop_uid)
    return stmt.order_by(
        Series.series_number.asc().nulls_last(),
        Series.id,
        Instance.instance_number.asc().nulls_last(),
        Instance.id,
    )


async def locate(
    conn: AsyncConnection,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[InstanceRef]:
    """The instances of a study, series or single instance, in WADO-01 order (empty if unknown)."""
    stmt = select(*REF_COLUMNS)
    rows = (await conn.execute(_target(stmt, study_uid, series_uid, sop_uid))).all()
    return [InstanceRef(*row) for row in rows]


async def locate_with_metadata(
    conn: AsyncConnection,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[tuple[InstanceRef, bytes]]:
    """The instances of a target with their stored metadata (BULK-03), in WADO-01 order."""
    stmt = select(*REF_COLUMNS, Instance.metadata_json)
    rows = (await conn.execute(_target(stmt, study_uid, series_uid, sop_uid))).all()
    return [(instance_ref(row), row[-1]) for row in _untyped(rows)]


async def locate_hashes(
    conn: AsyncConnection,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[str]:
    """The content hashes of a target's instances in WADO-01 order (a metadata ETag's input)."""
    stmt = select(Instance.sha256)
    return list((await conn.scalars(_target(stmt, study_uid, series_uid, sop_uid))).all())


async def locate_metadata(
    conn: AsyncConnection,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[MetadataRow]:
    """The stored metadata of a study, series or instance, in WADO-01 order (empty if unknown)."""
    stmt = select(Instance.sha256, Instance.metadata_json)
    rows = (await conn.execute(_target(stmt, study_uid, series_uid, sop_uid))).all()
    return [MetadataRow(*row) for row in rows]


async def locate_frames(
    conn: AsyncConnection, study_uid: str, series_uid: str, sop_uid: str
) -> FrameSource | None:
    """The blob, syntax and frame index of one instance (None if unknown)."""
    sources = await locate_frame_sources(conn, study_uid, series_uid, sop_uid)
    return sources[0] if sources else None


async def locate_frame_sources(
    conn: AsyncConnection,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[FrameSource]:
    """Blob, syntax and frame index of a target's instances, in WADO-01 order (RES-08)."""
    stmt = select(
        Study.study_uid,
        Series.series_uid,
        Instance.sop_uid,
        Instance.blob_key,
        Instance.transfer_syntax_uid,
        Instance.number_of_frames,
        Instance.frame_index,
        Instance.rows,
        Instance.columns,
    )
    rows = (await conn.execute(_target(stmt, study_uid, series_uid, sop_uid))).all()
    return [FrameSource(*row) for row in rows]


async def instance_metadata(
    conn: AsyncConnection, study_uid: str, series_uid: str, sop_uid: str
) -> bytes | None:
    """One instance's stored metadata JSON (None if unknown)."""
    stmt = select(Instance.metadata_json)
    return (await conn.scalars(_target(stmt, study_uid, series_uid, sop_uid))).first()

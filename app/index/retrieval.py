"""Index look-ups for WADO-RS retrieve (PS3.18 §10.4): blobs, metadata and frames of a target.

One query per request, whatever the number of instances: the three levels are joined and filtered
by every UID given, so an instance under another series (or a series under another study) is simply
not found. Rows come in the order of WADO-01: SeriesNumber, then InstanceNumber, with the row ids
breaking ties (and placing missing numbers last) so the order is stable across databases.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVarTuple

from sqlalchemy import Select, bindparam, select

from app.dicom.target import Target
from app.index.db import Database
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
    #: the blob opens with the PS3.10 preamble (None: not recorded; SQLite gives 0/1)
    part10_prefix: bool | None = None
    #: what a DIMSE peer must have accepted a presentation context for (C-GET, C-MOVE)
    sop_class_uid: str = ""


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
    Instance.part10_prefix,
    Instance.sop_class_uid,
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
    bits_allocated: int | None = None


def _target(stmt: Select[*_Ts], series: bool, instance: bool) -> Select[*_Ts]:
    """Join the three levels, keep the target's rows (bound parameters ``study_uid``, and
    ``series_uid`` / ``sop_uid`` when asked for), in WADO-01 order."""
    stmt = (
        stmt.select_from(Instance)
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Series.study_id)
        .where(Study.study_uid == bindparam("study_uid"))
    )
    if series:
        stmt = stmt.where(Series.series_uid == bindparam("series_uid"))
    if instance:
        stmt = stmt.where(Instance.sop_uid == bindparam("sop_uid"))
    return stmt.order_by(
        Series.series_number.asc().nulls_last(),
        Series.id,
        Instance.instance_number.asc().nulls_last(),
        Instance.id,
    )


class TargetQuery:
    """One look-up of a study, series or instance, built once and compiled once per dialect.

    These queries run on every retrieve, so building a ``select()``, computing its cache key
    and processing result rows through SQLAlchemy cost more CPU than the database does. Here
    the statement of each level (study, series, instance) is built once with bound parameters;
    its SQL is compiled once per dialect and executed on a driver connection (asyncpg: one of
    :meth:`Database.driver_connection`, with its prepared-statement cache; aiosqlite: the
    connection under SQLAlchemy's, one worker-thread hop), plain tuples coming back.
    Other drivers run the prebuilt statement through SQLAlchemy. Only plain column types are
    selected (text, integers, bytes, one boolean), which neither driver converts differently
    from SQLAlchemy but for SQLite's booleans, which come back as 0 and 1.
    """

    __slots__ = ("_compiled", "_statements")

    def __init__(self, *columns: Any) -> None:
        #: one statement per level: the UIDs given are (series given, instance given)
        self._statements = {
            (series, instance): _target(select(*columns), series, instance)
            for series, instance in ((False, False), (True, False), (True, True))
        }
        self._compiled: dict[tuple[bool, bool, str], tuple[str, tuple[str, ...]]] = {}

    async def rows(self, db: Database, target: Target) -> list[Sequence[Any]]:
        """The rows of the target (frames: of their instance), in WADO-01 order (empty if
        unknown)."""
        study_uid, series_uid, sop_uid = target.study_uid, target.series_uid, target.sop_uid
        level = (series_uid is not None, sop_uid is not None)
        params = {"study_uid": study_uid, "series_uid": series_uid, "sop_uid": sop_uid}
        dialect = db.engine.dialect
        driver = dialect.driver
        if driver not in _DIRECT_DRIVERS:
            given = {name: value for name, value in params.items() if value is not None}
            async with db.read() as conn:
                result = await conn.execute(self._statements[level], given)
                return list(_untyped(result.all()))
        key = (*level, driver)
        compiled = self._compiled.get(key)
        if compiled is None:
            sql = self._statements[level].compile(dialect=dialect)
            compiled = (sql.string, tuple(sql.positiontup or ()))
            self._compiled[key] = compiled
        sql_text, names = compiled
        args = [params[name] for name in names]
        if driver == "asyncpg":
            async with db.driver_connection() as pg:
                return list(await pg.fetch(sql_text, *args))
        async with db.read() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            return list(await raw.execute_fetchall(sql_text, args))


#: drivers whose connection :class:`TargetQuery` calls directly
_DIRECT_DRIVERS: Final = frozenset({"asyncpg", "aiosqlite"})

_LOCATE: Final = TargetQuery(*REF_COLUMNS)
_LOCATE_WITH_METADATA: Final = TargetQuery(*REF_COLUMNS, Instance.metadata_json)
_HASHES: Final = TargetQuery(Instance.sha256)
_METADATA: Final = TargetQuery(Instance.sha256, Instance.metadata_json)
_FRAME_SOURCES: Final = TargetQuery(
    Study.study_uid,
    Series.series_uid,
    Instance.sop_uid,
    Instance.blob_key,
    Instance.transfer_syntax_uid,
    Instance.number_of_frames,
    Instance.frame_index,
    Instance.rows,
    Instance.columns,
    Instance.bits_allocated,
)
_INSTANCE_METADATA: Final = TargetQuery(Instance.metadata_json)


async def locate(
    db: Database,
    target: Target,
) -> list[InstanceRef]:
    """The instances of a study, series or single instance, in WADO-01 order (empty if unknown)."""
    rows = await _LOCATE.rows(db, target)
    return [InstanceRef(*row) for row in rows]


async def locate_with_metadata(
    db: Database,
    target: Target,
) -> list[tuple[InstanceRef, bytes]]:
    """The instances of a target with their stored metadata (BULK-03), in WADO-01 order."""
    rows = await _LOCATE_WITH_METADATA.rows(db, target)
    return [(instance_ref(row), bytes(row[-1])) for row in rows]


async def locate_hashes(
    db: Database,
    target: Target,
) -> list[str]:
    """The content hashes of a target's instances in WADO-01 order (a metadata ETag's input)."""
    rows = await _HASHES.rows(db, target)
    return [row[0] for row in rows]


async def locate_metadata(
    db: Database,
    target: Target,
) -> list[MetadataRow]:
    """The stored metadata of a study, series or instance, in WADO-01 order (empty if unknown)."""
    rows = await _METADATA.rows(db, target)
    return [MetadataRow(row[0], bytes(row[1])) for row in rows]


async def locate_frame_sources(
    db: Database,
    target: Target,
) -> list[FrameSource]:
    """Blob, syntax and frame index of a target's instances, in WADO-01 order (RES-08)."""
    rows = await _FRAME_SOURCES.rows(db, target)
    return [FrameSource(*row) for row in rows]


async def instance_metadata(db: Database, target: Target) -> bytes | None:
    """One instance's stored metadata JSON (None if unknown)."""
    rows = await _INSTANCE_METADATA.rows(db, target)
    return bytes(rows[0][0]) if rows else None

"""Index writes and look-ups for ingest, fsck and gc (SQL lives only in ``app.index``).

Concurrency (DESIGN.md §2: nothing may assume one process): rows are created with
``INSERT ... ON CONFLICT DO NOTHING`` and then read back, so two requests racing to create the same
study or series both see the one row that won; counters are bumped with ``SET n = n + k`` in a
fixed order (series by id, then studies by id) at the very end of the transaction, so row locks are
short and two transactions never wait on each other in a cycle. The repository never commits: the
service that owns the transaction does.
"""

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cache, partial
from typing import Any, Final, TypeVar

import asyncpg
from sqlalchemy import String, any_, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import InstrumentedAttribute

from app.dicom.instance import ParsedInstance, SeriesFields, StudyFields
from app.dicom.text import normalize_pn
from app.index.db import Database, DriverError
from app.index.models import Instance, Series, Study


@dataclass(frozen=True, slots=True)
class StoredRef:
    """An instance already in the index."""

    id: int
    sop_uid: str
    study_uid: str
    series_uid: str
    series_id: int
    study_id: int
    sha256: str
    blob_key: str
    size: int


@dataclass(frozen=True, slots=True)
class NewInstance:
    """One instance to insert: its parse plus where its blob went."""

    parsed: ParsedInstance
    blob_key: str
    size: int
    sha256: str
    frame_index: bytes | None
    #: the blob opens with the PS3.10 preamble and "DICM" (else the File Meta group first)
    part10_prefix: bool | None = None


@dataclass(frozen=True, slots=True)
class StudyRow:
    id: int
    patient_id: str | None
    created: bool


@dataclass(frozen=True, slots=True)
class SeriesRow:
    id: int
    study_id: int
    created: bool


_Known = TypeVar("_Known")
_Row = TypeVar("_Row")
#: per UID: the read-back column's value a created row gets, and its insert values (built only
#: for a row really missing)
_Wanted = dict[str, tuple[_Known, Callable[[], dict[str, Any]]]]


def _insert(conn: AsyncConnection, table: Any) -> postgresql.Insert | sqlite.Insert:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {dialect}")


#: :meth:`InstanceIndex._get_or_insert`'s statements by (dialect, table): built once, as
#: building them per call cost more CPU than running them
_GET_OR_INSERT: dict[tuple[str, type[Any]], tuple[Any, Any]] = {}


def _get_or_insert_statements(
    dialect: str, model: type[Study] | type[Series], uid: InstrumentedAttribute[str], known: Any
) -> tuple[Any, Any]:
    """The look-up of existing rows (``uids``: a list) and the multi-row insert of missing
    ones, for ``model``'s rows keyed by ``uid`` (and read back with ``known``)."""
    statements = _GET_OR_INSERT.get((dialect, model))
    if statements is None:
        if dialect not in ("postgresql", "sqlite"):
            raise NotImplementedError(f"unsupported database dialect {dialect}")
        lookup = select(uid, model.id, known).where(uid.in_(bindparam("uids", expanding=True)))
        insert = postgresql.insert(model) if dialect == "postgresql" else sqlite.insert(model)
        upsert = insert.on_conflict_do_nothing(index_elements=[uid.key]).returning(uid, model.id)
        statements = _GET_OR_INSERT[dialect, model] = (lookup, upsert)
    return statements


def _study_values(fields: StudyFields, attrs_json: bytes) -> dict[str, Any]:
    values = asdict(fields)
    values["patient_name_norm"] = normalize_pn(fields.patient_name) if fields.patient_name else None
    ref = fields.referring_physician_name
    values["referring_physician_name_norm"] = normalize_pn(ref) if ref else None
    values["attrs_json"] = attrs_json
    return values


def _series_values(fields: SeriesFields, study_id: int, attrs_json: bytes) -> dict[str, Any]:
    values = asdict(fields)
    values["scheduled_procedure_step_ids"] = "\\".join(fields.scheduled_procedure_step_ids) or None
    values["requested_procedure_ids"] = "\\".join(fields.requested_procedure_ids) or None
    values["study_id"] = study_id
    values["attrs_json"] = attrs_json
    return values


#: what :meth:`InstanceIndex.find_instances` selects for each stored instance
_STORED_COLUMNS: Final = (
    Instance.id,
    Instance.sop_uid,
    Study.study_uid,
    Series.series_uid,
    Instance.series_id,
    Instance.study_id,
    Instance.sha256,
    Instance.blob_key,
    Instance.size,
)


def _stored(where: Any) -> Any:
    return (
        select(*_STORED_COLUMNS)
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Instance.study_id)
        .where(where)
    )


#: :func:`find_stored` on PostgreSQL: the same query with an array parameter, for the driver
_FIND_STORED: Final = _stored(
    Instance.sop_uid == any_(bindparam("uids", type_=postgresql.ARRAY(String)))
)


@cache
def _find_stored_sql(dialect: Dialect) -> str:
    """:data:`_FIND_STORED`'s SQL, compiled once (per engine)."""
    return str(_FIND_STORED.compile(dialect=dialect))


async def find_stored(db: Database, sop_uids: Iterable[str]) -> dict[str, StoredRef]:
    """The stored instances among ``sop_uids`` (:meth:`InstanceIndex.find_instances` in a unit
    of work of its own).

    Ingest asks this once per batch, before it writes anything. On PostgreSQL it is one
    statement on a connection of the driver pool (:meth:`Database.driver_connection`): no
    SQLAlchemy pool checkout, transaction, statement building or row processing around it.
    """
    uids = sorted(set(sop_uids))
    if db.engine.dialect.driver != "asyncpg":
        async with db.read() as conn:
            return await InstanceIndex(conn).find_instances(uids)
    found: dict[str, StoredRef] = {}
    sql = _find_stored_sql(db.engine.dialect)
    try:
        async with db.driver_connection() as pg:
            for chunk in _chunks(uids, 500):
                for row in await pg.fetch(sql, chunk):
                    found[row[1]] = StoredRef(*row)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # as SQLAlchemy would have raised it (the callers know no driver)
        raise DriverError(sql, None, exc, hide_parameters=True) from exc
    return found


_BUMP_SERIES: Final = (
    update(Series)
    .where(Series.id == bindparam("row"))
    .values(num_instances=Series.num_instances + bindparam("n"))
)
_BUMP_STUDY: Final = (
    update(Study)
    .where(Study.id == bindparam("row"))
    .values(
        num_series=Study.num_series + bindparam("series"),
        num_instances=Study.num_instances + bindparam("n"),
    )
)


class InstanceIndex:
    """Index operations on one connection inside the caller's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def find_instances(self, sop_uids: Iterable[str]) -> dict[str, StoredRef]:
        """The stored instances among ``sop_uids``."""
        uids = sorted(set(sop_uids))
        found: dict[str, StoredRef] = {}
        for chunk in _chunks(uids, 500):
            rows = await self._conn.execute(_stored(Instance.sop_uid.in_(chunk)))
            for row in rows:
                found[row.sop_uid] = StoredRef(*row)
        return found

    async def ensure_studies(
        self, items: Iterable[tuple[StudyFields, bytes]]
    ) -> dict[str, StudyRow]:
        """The rows of the given studies (keyed by UID), creating the missing ones.

        A returned ``patient_id`` that differs from the one asked for means the study is
        already held under another PatientID (STOW-10).
        """
        wanted: _Wanted[str | None] = {}
        for fields, attrs_json in items:
            if fields.study_uid not in wanted:
                values = partial(_study_values, fields, attrs_json)
                wanted[fields.study_uid] = (fields.patient_id, values)
        return await self._get_or_insert(Study, Study.study_uid, Study.patient_id, wanted, StudyRow)

    async def ensure_series(
        self, items: Iterable[tuple[SeriesFields, int, bytes]]
    ) -> dict[str, SeriesRow]:
        """The rows of the given series (keyed by UID), creating missing ones under a study id.

        A returned ``study_id`` that differs from the one asked for means the series is already
        filed under another study (STOW-10).
        """
        wanted: _Wanted[int] = {}
        for fields, study_id, attrs_json in items:
            if fields.series_uid not in wanted:
                values = partial(_series_values, fields, study_id, attrs_json)
                wanted[fields.series_uid] = (study_id, values)
        return await self._get_or_insert(
            Series, Series.series_uid, Series.study_id, wanted, SeriesRow
        )

    async def _get_or_insert(
        self,
        model: type[Study] | type[Series],
        uid: InstrumentedAttribute[str],
        known: InstrumentedAttribute[_Known],
        wanted: _Wanted[_Known],
        row: Callable[[int, _Known, bool], _Row],
    ) -> dict[str, _Row]:
        """``row(id, known, created)`` for each UID of ``wanted``, inserting the missing rows.

        One look-up, one multi-row ``INSERT ... ON CONFLICT DO NOTHING`` in UID order, and a
        second look-up only for rows another transaction created meanwhile; ``known`` is the
        column read back with the id (a created row's is the one it was created with).
        """
        lookup, upsert = _get_or_insert_statements(self._conn.dialect.name, model, uid, known)
        rows = {
            r[0]: row(r[1], r[2], False)
            for r in await self._conn.execute(lookup, {"uids": sorted(wanted)})
        }
        missing = sorted(key for key in wanted if key not in rows)
        if missing:
            values = [wanted[key][1]() for key in missing]
            for new_uid, new_id in await self._conn.execute(upsert, values):
                rows[new_uid] = row(new_id, wanted[new_uid][0], True)
            raced = [key for key in missing if key not in rows]
            if raced:
                for r in await self._conn.execute(lookup, {"uids": raced}):
                    rows[r[0]] = row(r[1], r[2], False)
        return rows

    async def insert_instances(self, rows: Sequence[tuple[NewInstance, int, int]]) -> set[str]:
        """Insert ``(instance, series_id, study_id)`` rows; returns the SOP UIDs really inserted.

        A UID missing from the result was inserted concurrently by another transaction.
        """
        if not rows:
            return set()
        values = [_instance_values(new, series_id, study_id) for new, series_id, study_id in rows]
        stmt = (
            _insert(self._conn, Instance)
            .on_conflict_do_nothing(index_elements=["sop_uid"])
            .returning(Instance.sop_uid)
        )
        result = await self._conn.execute(stmt, values)
        return {row[0] for row in result}

    async def replace_instance(self, old: StoredRef, new: NewInstance) -> None:
        """Point an existing row at a new blob and metadata (STOW-09 ``overwrite``)."""
        values = _instance_values(new, old.series_id, old.study_id)
        for key in ("sop_uid", "series_id", "study_id"):
            values.pop(key)
        await self._conn.execute(update(Instance).where(Instance.id == old.id).values(values))

    async def delete_empty(self, *, series_ids: Sequence[int], study_ids: Sequence[int]) -> None:
        """Remove series and studies created in this transaction that received no instance."""
        if series_ids:
            await self._conn.execute(delete(Series).where(Series.id.in_(sorted(series_ids))))
        if study_ids:
            await self._conn.execute(delete(Study).where(Study.id.in_(sorted(study_ids))))

    async def bump_counts(
        self, series_added: dict[int, int], studies_added: dict[int, tuple[int, int]]
    ) -> None:
        """Add instance counts per series and (series, instance) counts per study (QIDO-26).

        ``UPDATE ... SET n = n + :n WHERE id = :id``, built once, run for the rows of each table
        in id order as one batch of parameters (one round trip with asyncpg), called last in the
        transaction, so the hot study rows are locked briefly. (Built per call as one
        ``UPDATE ... CASE id WHEN ...``, the statements cost 0.8 ms of CPU per transaction.)
        """
        if series_added:
            await self._conn.execute(
                _BUMP_SERIES, [{"row": k, "n": series_added[k]} for k in sorted(series_added)]
            )
        if studies_added:
            await self._conn.execute(
                _BUMP_STUDY,
                [
                    {"row": k, "series": studies_added[k][0], "n": studies_added[k][1]}
                    for k in sorted(studies_added)
                ],
            )

    async def blobs(self) -> AsyncIterator[tuple[str, str, int, str]]:
        """Every instance's ``(blob_key, sha256, size, sop_uid)``, streamed (fsck, gc)."""
        result = await self._conn.stream(
            select(Instance.blob_key, Instance.sha256, Instance.size, Instance.sop_uid)
        )
        async for row in result:
            yield row.blob_key, row.sha256, row.size, row.sop_uid

    async def unrecorded_prefixes(self, after_id: int, limit: int) -> list[tuple[int, str]]:
        """``(id, blob_key)`` of rows past ``after_id`` whose PS3.10 prefix is not recorded
        (stored before it was), in id order, at most ``limit``."""
        rows = await self._conn.execute(
            select(Instance.id, Instance.blob_key)
            .where(Instance.id > after_id, Instance.part10_prefix.is_(None))
            .order_by(Instance.id)
            .limit(limit)
        )
        return [(row.id, row.blob_key) for row in rows]

    async def record_prefixes(self, prefixed: dict[int, bool]) -> None:
        """Record whether each row's blob opens with the PS3.10 prefix (rows still unrecorded
        only: a row replaced meanwhile already has its own)."""
        for value in (True, False):
            ids = [row_id for row_id, flag in prefixed.items() if flag is value]
            if ids:
                await self._conn.execute(
                    update(Instance)
                    .where(Instance.id.in_(ids), Instance.part10_prefix.is_(None))
                    .values(part10_prefix=value)
                )

    async def has_blob(self, key: str) -> bool:
        """Whether any row references ``key``."""
        row = await self._conn.execute(select(Instance.id).where(Instance.blob_key == key).limit(1))
        return row.first() is not None


def _instance_values(new: NewInstance, series_id: int, study_id: int) -> dict[str, Any]:
    values = asdict(new.parsed.instance)
    values.update(
        series_id=series_id,
        study_id=study_id,
        blob_key=new.blob_key,
        size=new.size,
        sha256=new.sha256,
        attrs_json=new.parsed.instance_json,
        metadata_json=new.parsed.metadata_json,
        frame_index=new.frame_index,
        part10_prefix=new.part10_prefix,
    )
    return values


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

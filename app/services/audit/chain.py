"""The hash chain of the audit rows: ``hash = sha256(prev_hash || canonical content)``, with
``seq`` numbering the chain without gaps, so a walk (:class:`ChainWalk`) finds an edited,
inserted or removed row.

The canonical content is the row's content fields as sorted-key JSON, its time as
``%Y-%m-%dT%H:%M:%S.%fZ`` in UTC, ``seq``, and ``requests`` only when set (rows written before it
existed hold NULL, and their hashes stay valid).
"""

import asyncio
import hashlib
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from app.index.audit import journal as journal_table
from app.index.audit.chain import COLUMNS
from app.services.audit.records import AuditRecord, storable

__all__ = [
    "CONTENT_FIELDS",
    "GENESIS",
    "SLICE",
    "ChainReport",
    "ChainWalk",
    "as_json",
    "chain_rows",
    "chain_rows_in_slices",
    "named",
    "row_hash",
    "stamp",
    "utc",
]

GENESIS: Final = "0" * 64

#: what a row's hash covers: an audit event's content, the columns the journal holds as well
CONTENT_FIELDS: Final = journal_table.FIELDS
#: hashed only when set (rows written before it existed hold NULL, and their hashes stay valid)
_REQUESTS: Final = "requests"
#: a written row's values in :data:`~app.index.audit.chain.COLUMNS` order (:func:`chain_rows`'
#: rows, the values the index writes)
_values_of: Final = operator.itemgetter(*COLUMNS)
_SEQ_AT: Final = COLUMNS.index("seq")
_HASH_AT: Final = COLUMNS.index("hash")
#: events built or hashed between two returns to the event loop (about 0.1 ms of CPU)
SLICE: Final = 8


@dataclass(slots=True)
class ChainReport:
    """What :meth:`AuditLog.verify` found."""

    rows: int = 0
    problems: list[str] = field(default_factory=list)
    #: events committed with their writes (the audit journal) and not chained yet: no problem,
    #: the server chains them (after a crash, when it starts again)
    pending: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def named(row: Sequence[Any]) -> dict[str, Any]:
    """A row of :func:`chain_rows` (values in ``COLUMNS`` order) by column name."""
    return dict(zip(COLUMNS, row, strict=True))


def utc(value: datetime) -> datetime:
    """Aware UTC (SQLite hands back naive datetimes of what was stored as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def stamp(value: datetime) -> str:
    """The hashed form of a row's time: ``%Y-%m-%dT%H:%M:%S.%fZ`` in UTC.

    >>> stamp(datetime(2026, 12, 4, 18, 30, 5, tzinfo=UTC))
    '2026-12-04T18:30:05.000000Z'
    """
    value = utc(value)
    if value.year < 1000:  # strftime does not pad the year to four digits everywhere
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # the same text as that strftime, at a tenth of its cost (isoformat: twice this)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - the fastest spelling
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def row_hash(prev_hash: str, seq: int, content: dict[str, Any]) -> str:
    """The chain hash of one row: SHA-256 over the previous hash, ``seq`` and the content."""
    canonical = dict(content)
    canonical["time"] = stamp(canonical["time"])
    canonical["seq"] = seq
    payload = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + b"\n" + payload).hexdigest()


def _content(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row's hashed content: the content fields, and ``requests`` when it is set."""
    content = {name: row[name] for name in CONTENT_FIELDS}
    requests = row.get(_REQUESTS)
    if requests is not None:
        content[_REQUESTS] = requests
    return content


def as_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as a JSON-ready dict (API, export); ``requests`` is 1 for a row of its own."""
    out = _content(row)
    out.setdefault(_REQUESTS, 1)
    out["time"] = utc(out["time"]).isoformat().replace("+00:00", "Z")
    out["seq"] = row["seq"]
    out["hash"] = row["hash"]
    out["prev_hash"] = row["prev_hash"]
    return out


class ChainWalk:
    """Checks stored rows fed in chain order (:meth:`check`): every row's hash recomputed,
    every link and ``seq`` checked; what it finds is in :attr:`report`."""

    def __init__(self) -> None:
        self.report = ChainReport()
        self._prev = GENESIS
        self._expected_seq = 1

    def check(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Check the next ``rows`` of the chain."""
        report = self.report
        for row in rows:
            seq, prev_hash, stored_hash = row["seq"], row["prev_hash"], row["hash"]
            report.rows += 1
            if seq != self._expected_seq:
                report.problems.append(
                    f"seq {self._expected_seq}..{seq - 1} missing (rows removed)"
                    if seq > self._expected_seq
                    else f"seq {seq} out of order"
                )
            if prev_hash != self._prev:
                report.problems.append(f"seq {seq}: link to the previous row broken")
            if row_hash(prev_hash, seq, _content(row)) != stored_hash:
                report.problems.append(f"seq {seq}: content changed after writing")
            self._prev, self._expected_seq = stored_hash, seq + 1


async def chain_rows_in_slices(
    batch: Sequence[AuditRecord], patients: dict[str, Any], seq: int, prev: str
) -> list[tuple[Any, ...]]:
    """:func:`chain_rows` of a batch, a slice at a time: the writer shares its process's event
    loop with the requests, and a full batch hashed in one go would hold them up for
    milliseconds (the chain head stays locked meanwhile, so the result is the same)."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(batch), SLICE):
        if start:
            await asyncio.sleep(0)
        chained = chain_rows(batch[start : start + SLICE], patients, seq, prev)
        seq, prev = chained[-1][_SEQ_AT], chained[-1][_HASH_AT]
        rows += chained
    return rows


def chain_rows(
    batch: Sequence[AuditRecord], patients: dict[str, Any], seq: int, prev: str
) -> list[tuple[Any, ...]]:
    """The rows, as values in ``COLUMNS`` order, that append ``batch`` to the chain after
    ``seq``/``prev``.

    An event naming a study but no patient gets the study's PatientID from ``patients``. The
    canonical form that is hashed (:func:`row_hash`'s) is built directly, in one dict, then
    completed into the row: this runs once per audited request.
    """
    rows = []
    for event in batch:
        seq += 1
        time = event.time
        if time.tzinfo is not UTC:
            time = utc(time)
        study, patient, requests = event.study_uid, event.patient_id, event.requests
        if patient is None and study:
            patient = patients.get(study) or None
        row: dict[str, Any] = {
            "action": event.action,
            "actor": event.actor,
            "client_id": event.client_id,
            "count": event.count,
            "detail": event.detail,
            "instance_uid": event.instance_uid,
            "outcome": event.outcome,
            "patient_id": patient,
            "request_id": event.request_id,
            "seq": seq,
            "series_uid": event.series_uid,
            "source": event.source,
            "status": event.status,
            "study_uid": study,
            "time": stamp(time),
        }
        if requests is not None:  # hashed only when set
            row[_REQUESTS] = requests
        try:
            payload = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            # text no UTF-8 encoder takes: a surrogate code point, as a token's JSON may spell
            # one ("\\ud800"), would fail this batch forever; it becomes U+FFFD (anything else
            # unstorable fails again here, for :meth:`AuditLog._narrowed` to find)
            row = {name: storable(value) for name, value in row.items()}
            payload = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        if b"\\u0000" in payload:  # JSON's escape of NUL (or a value spelling it out)
            # PostgreSQL stores no NUL in text: such an event (a %00 in a requested path) would
            # fail its batch forever and stall the whole log, so NUL becomes U+FFFD
            row = {name: storable(value) for name, value in row.items()}
            payload = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(prev.encode() + b"\n" + payload).hexdigest()
        row["time"], row[_REQUESTS], row["prev_hash"], row["hash"] = time, requests, prev, digest
        rows.append(_values_of(row))
        prev = digest
    return rows

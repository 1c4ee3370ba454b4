"""Aggregation: the reads of one caller on one series that land in one batch become one row that
counts them (:func:`aggregate`), so a viewer paging through a series frame by frame leaves a row
per batch, not a row per frame."""

import operator
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

from app.services.audit.records import AuditRecord

__all__ = ["AGGREGATED_ACTIONS", "aggregate"]

#: actions whose events :func:`aggregate` may merge: reads, which a viewer makes by the hundred
#: (a frame request per image); stores, deletions, failed logins and audit queries keep a row each
AGGREGATED_ACTIONS: Final = frozenset(
    {"search", "retrieve", "metadata", "frames", "render", "bulkdata", "capabilities"}
)
#: what two events must share to be merged: all but time, instance, count and request id
_aggregation_key: Final = operator.attrgetter(
    "action",
    "outcome",
    "status",
    "actor",
    "client_id",
    "source",
    "study_uid",
    "series_uid",
    "patient_id",
    "detail",
)


def aggregate(batch: Sequence[AuditRecord]) -> list[AuditRecord]:
    """``batch`` with the reads of one caller on one series merged into one record each.

    Events merge when they share everything but time, SOP instance, count and request id (same
    actor, client, address, action, outcome, status, study, series, patient and route) and the
    action is one of :data:`AGGREGATED_ACTIONS`. A merged record keeps the first event's time,
    request id and place in the batch; its ``requests`` is the number of events, its ``count``
    their sum, and its instance UID the one they share, if they do. This is the granularity of a
    DICOM "Instances Accessed" audit message (PS3.15 A.5.3.2): who read which study of which
    patient, from where, when, how much. The batch spans at most the writer's linger (0.1 s by
    default), so a merged row is never late.

    >>> batch = [AuditRecord("frames", "success", instance_uid=f"1.{i}", series_uid="2",
    ...                      request_id=str(i)) for i in range(3)]
    >>> [merged] = aggregate(batch)
    >>> (merged.requests, merged.instance_uid, merged.request_id)
    (3, None, '0')
    """
    out: list[AuditRecord] = []
    groups: dict[tuple[Any, ...], int] = {}  # key -> index in out
    for event in batch:
        if event.action not in AGGREGATED_ACTIONS:
            out.append(event)
            continue
        key = _aggregation_key(event)
        at = groups.get(key)
        if at is None:
            groups[key] = len(out)
            out.append(event)
            continue
        first = out[at]
        if first.requests is None:  # the first merge: a copy, never the caller's record
            first = out[at] = replace(first, requests=1)
        first.requests = (first.requests or 1) + (event.requests or 1)
        if first.instance_uid != event.instance_uid:
            first.instance_uid = None
        if event.count is not None:
            first.count = (first.count or 0) + event.count
        if event.time < first.time:
            first.time = event.time
    return out

"""gc, fsck and retention run on a schedule (:mod:`app.services.housekeeping`): each run, and
what it found or removed.

The gauges of what the last fsck found keep the value of the process that set it last
(``mostrecent``), so they survive that worker; the directory of a run starts empty, so after a
restart they are absent until the next fsck.
"""

from typing import Final, Literal

from prometheus_client import Counter, Gauge

__all__ = ["JobOutcome", "record_fsck", "record_gc", "record_job", "record_retention"]

JobOutcome = Literal["success", "failure", "refused"]

_RUNS: Final = Counter(
    "lightbox_housekeeping_runs",
    "scheduled housekeeping runs (gc, fsck, retention) by outcome (refused: retention's threshold)",
    ("job", "outcome"),
)
_LAST_SUCCESS: Final = Gauge(
    "lightbox_housekeeping_last_success_timestamp_seconds",
    "when each housekeeping job last ended well (Unix time)",
    ("job",),
    multiprocess_mode="max",
)
_LAST_DURATION: Final = Gauge(
    "lightbox_housekeeping_last_duration_seconds",
    "how long the last run of each housekeeping job took",
    ("job",),
    multiprocess_mode="mostrecent",
)
_FSCK_PROBLEMS: Final = Gauge(
    "lightbox_fsck_problems",
    "what the last fsck found, by kind: missing_blobs, size_mismatches, hash_mismatches, "
    "unreferenced_blobs (hash_mismatches only when it re-hashes)",
    ("kind",),
    multiprocess_mode="mostrecent",
)
_FSCK_ROWS: Final = Gauge(
    "lightbox_fsck_rows_checked",
    "index rows the last fsck compared with their blobs",
    multiprocess_mode="mostrecent",
)
_GC_REMOVED: Final = Counter(
    "lightbox_gc_removed", "what gc removed: unreferenced blobs, stale temp files", ("what",)
)
_RETENTION_STUDIES: Final = Counter(
    "lightbox_retention_deleted_studies", "studies deleted by retention rules"
)
_RETENTION_INSTANCES: Final = Counter(
    "lightbox_retention_deleted_instances", "instances deleted by retention rules"
)


def record_job(job: str, outcome: JobOutcome, seconds: float, ended: float) -> None:
    """Count a run of ``job`` that ended at ``ended`` (Unix time) after ``seconds``."""
    _RUNS.labels(job, outcome).inc()
    _LAST_DURATION.labels(job).set(seconds)
    if outcome == "success":
        _LAST_SUCCESS.labels(job).set(ended)


def record_fsck(
    rows_checked: int,
    missing_blobs: int,
    size_mismatches: int,
    hash_mismatches: int,
    unreferenced_blobs: int,
) -> None:
    """What an fsck found."""
    _FSCK_ROWS.set(rows_checked)
    for kind, count in (
        ("missing_blobs", missing_blobs),
        ("size_mismatches", size_mismatches),
        ("hash_mismatches", hash_mismatches),
        ("unreferenced_blobs", unreferenced_blobs),
    ):
        _FSCK_PROBLEMS.labels(kind).set(count)


def record_gc(blobs: int, temp_files: int) -> None:
    """What a gc removed."""
    _GC_REMOVED.labels("blobs").inc(blobs)
    _GC_REMOVED.labels("temp_files").inc(temp_files)


def record_retention(studies: int, instances: int) -> None:
    """What retention deleted."""
    _RETENTION_STUDIES.inc(studies)
    _RETENTION_INSTANCES.inc(instances)

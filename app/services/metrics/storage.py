"""The object store's operations: their durations and failures (an observer the composition
root gives the store, :meth:`app.storage.base.ObjectStoreBase.observe`)."""

from typing import Any, Final

from prometheus_client import Counter, Histogram

__all__ = ["StoreMetrics"]

_DURATION: Final = Histogram(
    "lightbox_blob_operation_duration_seconds",
    "object store operations (put, get_range, stat, delete) that succeeded, by store kind",
    ("store", "operation"),
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
_ERRORS: Final = Counter(
    "lightbox_blob_errors",
    "object store operations that failed (reason failure), and reads of missing objects "
    "(reason not_found: an index row without its blob, see lightbox fsck)",
    ("store", "operation", "reason"),
)


class StoreMetrics:
    """The metrics of one store (``store``: its kind, filesystem, s3, memory)."""

    def __init__(self, store: str) -> None:
        self._store = store
        self._timers: dict[str, Any] = {}

    def timed(self, operation: str, seconds: float) -> None:
        timer = self._timers.get(operation)
        if timer is None:
            timer = self._timers[operation] = _DURATION.labels(self._store, operation)
        timer.observe(seconds)

    def failed(self, operation: str, reason: str) -> None:
        _ERRORS.labels(self._store, operation, reason).inc()

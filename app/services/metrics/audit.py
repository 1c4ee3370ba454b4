"""The audit writer's batches: events written and attempts that failed (the queue's depth and
the writer's lag are sampled, :mod:`.runtime`)."""

from typing import Final

from prometheus_client import Counter

__all__ = ["record_audit_failure", "record_audit_written"]

_WRITTEN: Final = Counter("lightbox_audit_events_written", "audit rows appended to the chain")
_FAILURES: Final = Counter(
    "lightbox_audit_write_failures",
    "attempts at writing an audit batch that failed (each is retried until written)",
)


def record_audit_written(events: int) -> None:
    _WRITTEN.inc(events)


def record_audit_failure() -> None:
    _FAILURES.inc()

"""Instances stored and refused, by the protocol they came in by (STOW-RS, C-STORE, import)."""

from collections.abc import Iterable
from typing import Final, Literal

from prometheus_client import Counter

__all__ = ["IngestProtocol", "record_ingest"]

#: how instances reach ingest
IngestProtocol = Literal["stow", "cstore", "import"]

_INSTANCES: Final = Counter(
    "lightbox_ingest_instances", "instances stored (re-sends of stored ones too)", ("protocol",)
)
_BYTES: Final = Counter("lightbox_ingest_bytes", "bytes of the instances stored", ("protocol",))
_FAILURES: Final = Counter(
    "lightbox_ingest_failures",
    "instances refused, by reason (the refusal's kind: duplicate_instance, invalid_instance, "
    "out_of_resources, ...)",
    ("protocol", "reason"),
)


def record_ingest(
    protocol: IngestProtocol, stored: int, stored_bytes: int, failures: Iterable[str] = ()
) -> None:
    """Count ``stored`` instances of ``stored_bytes`` bytes, and one refusal per reason given."""
    if stored:
        _INSTANCES.labels(protocol).inc(stored)
    if stored_bytes:
        _BYTES.labels(protocol).inc(stored_bytes)
    for reason in failures:
        _FAILURES.labels(protocol, reason).inc()

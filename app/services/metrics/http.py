"""HTTP requests: one histogram by service, method, route template and status, and failures by
reason.

The labels of a request are looked up once per combination (:class:`RequestMetrics` keeps the
histogram's child for each), so a request costs one ``observe``: a dictionary look-up and two
increments (the duration's sum and its bucket).
"""

from typing import Any, Final

from prometheus_client import Counter, Histogram

__all__ = ["BUCKETS", "UNMATCHED", "RequestMetrics", "record_failure"]

#: seconds: a frame from the page cache (1 ms) to a multi-gigabyte study (a minute)
BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: the route label of a request no route matched (its path is never a label)
UNMATCHED: Final = "<unmatched>"
#: methods named in the labels; any other is "OTHER" (a client can send any token)
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: label combinations kept per process (routes x methods x statuses is far fewer)
_CACHED: Final = 4096

_DURATION: Final = Histogram(
    "lightbox_http_request_duration_seconds",
    "HTTP requests by service (the route's tag: qido, wado, stow, wado-uri, rendered, ...), "
    "method, route template and status: their number (_count) and duration",
    ("service", "method", "route", "status"),
    buckets=BUCKETS,
)
_FAILURES: Final = Counter(
    "lightbox_http_failures",
    "HTTP requests that ended in an error, by service and reason (the error's kind, "
    "'unhandled' for a bug)",
    ("service", "reason"),
)


class RequestMetrics:
    """The request histogram's children of this process, by label combination."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, str, int], Any] = {}

    def observe(self, service: str, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request that took ``seconds``."""
        key = (service, method, route, status)
        child = self._children.get(key)
        if child is None:
            child = _DURATION.labels(
                service, method if method in _METHODS else "OTHER", route, str(status)
            )
            if len(self._children) < _CACHED:
                self._children[key] = child
        child.observe(seconds)


def record_failure(service: str, reason: str) -> None:
    """Count a request that failed with ``reason`` (an error class's name: a bounded set)."""
    _FAILURES.labels(service, reason).inc()

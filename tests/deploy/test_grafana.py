"""The Grafana dashboard (deploy/grafana/lightbox.json) asks only for metrics Lightbox exposes,
and shows each kind the issue names (requests, QIDO and WADO latency, ingest, failures, audit,
database pool, object store, DIMSE, housekeeping)."""

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import app.services.metrics  # noqa: F401 (registers every metric)

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "lightbox.json"
_NAME = re.compile(r"\blightbox_[a-z_]+")


def _exposed() -> set[str]:
    """Every sample name the process registry can produce (counters' _total, histograms'
    _bucket, _count, _sum, gauges as named)."""
    names = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("lightbox_"):
            continue
        names.add(family.name)
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
        }.get(family.type, ())
        names.update(family.name + suffix for suffix in suffixes)
    return names


def _expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_every_metric_the_dashboard_asks_for_exists() -> None:
    exposed = _exposed()
    asked = {name for expr in _expressions() for name in _NAME.findall(expr)}
    assert asked, "no Lightbox metric in the dashboard"
    assert asked - exposed == set()


def test_the_dashboard_covers_each_kind() -> None:
    text = " ".join(_expressions())
    for needed in (
        'service="qido"',
        'service="wado"',
        "lightbox_ingest_instances_total",
        "lightbox_ingest_bytes_total",
        "lightbox_ingest_failures_total",
        "lightbox_http_failures_total",
        "lightbox_audit_queue_depth",
        "lightbox_audit_writer_lag_seconds",
        "lightbox_db_pool_connections",
        "lightbox_blob_operation_duration_seconds_bucket",
        "lightbox_blob_errors_total",
        "lightbox_dimse_associations_total",
        "lightbox_fsck_problems",
        "lightbox_gc_removed_total",
        "lightbox_retention_deleted_studies_total",
    ):
        assert needed in text, needed

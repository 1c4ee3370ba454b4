"""Prometheus metrics: what every front end and service counts, by name (issue 23, point 4).

The metrics are prometheus-client's, defined once per process (its registry is a process-wide
one; no connection is held). With several processes (``lightbox serve --workers N``, a DIMSE
listener beside them) each process writes its values to a directory of the run and a scrape
sums them (:mod:`app.telemetry`). Every name starts with ``lightbox_``:

================================================  =========  ==================================
name                                              type       labels
================================================  =========  ==================================
``http_request_duration_seconds``                 histogram  service, method, route, status
``http_failures_total``                           counter    service, reason
``ingest_instances_total``                        counter    protocol (stow, cstore, import)
``ingest_bytes_total``                            counter    protocol
``ingest_failures_total``                         counter    protocol, reason
``dimse_associations_total``                      counter    outcome
``dimse_operations_total``                        counter    operation, status
``dimse_operation_duration_seconds``              histogram  operation
``blob_operation_duration_seconds``               histogram  store, operation
``blob_errors_total``                             counter    store, operation, reason
``audit_queue_depth``                             gauge      (sum of the live processes)
``audit_writer_lag_seconds``                      gauge      (max of the live processes)
``audit_events_written_total``                    counter
``audit_write_failures_total``                    counter
``db_pool_connections``                           gauge      pool, state
``worker_processes``                              gauge      (live processes serving HTTP)
``build_info``                                    gauge      version
``housekeeping_runs_total``                       counter    job, outcome
``housekeeping_last_success_timestamp_seconds``   gauge      job
``housekeeping_last_duration_seconds``            gauge      job
``fsck_problems``                                 gauge      kind
``fsck_rows_checked``                             gauge
``gc_removed_total``                              counter    what (blobs, temp_files)
``retention_deleted_studies_total``               counter
``retention_deleted_instances_total``             counter
================================================  =========  ==================================

The request count is the histogram's ``_count``; QIDO-RS, WADO-RS, STOW-RS and WADO-URI are its
``service`` label (the route's tag), so their latencies are one selector each. ``route`` is the
route's template (``/dicom-web/studies/{study}/series``), never the request's path, whose UIDs
would make a series per study; a request no route matched is ``<unmatched>``.

What a front end calls (the DIMSE one included):

- ingest: :class:`~app.services.ingest.IngestSession` counts what it stored and refused under
  the protocol it was opened with (``services.ingest.session(protocol="cstore")``);
  :func:`record_ingest` counts for a front end that stores some other way;
- DIMSE: :func:`dimse_association` once per association (``accepted``, ``rejected``,
  ``released``, ``aborted``), :func:`dimse_operation` once per DIMSE request (C-ECHO, C-STORE,
  C-FIND, C-MOVE, C-GET, N-ACTION with its status category, :func:`status_category`, and its
  duration); ``app.dimse.server`` does both for every handler it binds.
"""

from app.services.metrics.audit import record_audit_failure, record_audit_written
from app.services.metrics.dimse import dimse_association, dimse_operation, status_category
from app.services.metrics.housekeeping import (
    record_fsck,
    record_gc,
    record_job,
    record_retention,
)
from app.services.metrics.http import UNMATCHED, RequestMetrics, record_failure
from app.services.metrics.ingest import IngestProtocol, record_ingest
from app.services.metrics.runtime import (
    ProcessMetrics,
    exposition,
    process_started,
    sample,
    sampling,
)
from app.services.metrics.storage import StoreMetrics

__all__ = [
    "UNMATCHED",
    "IngestProtocol",
    "ProcessMetrics",
    "RequestMetrics",
    "StoreMetrics",
    "dimse_association",
    "dimse_operation",
    "exposition",
    "process_started",
    "record_audit_failure",
    "record_audit_written",
    "record_failure",
    "record_fsck",
    "record_gc",
    "record_ingest",
    "record_job",
    "record_retention",
    "sample",
    "sampling",
    "status_category",
]

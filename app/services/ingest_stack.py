"""What every process that stores instances opens: the index, the object store, ingest and the
audit log, built from the settings.

``open_services`` (:mod:`app.services.container`) builds these first and the rest of the services
on them; an import worker (:mod:`app.services.imports.processes`) opens only these
(:func:`open_ingest`), so it loads neither the web, token, render nor DIMSE code (~20 MB less per
worker, of ~150).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from pydantic import SecretStr

from app.config import Settings
from app.index import migrate
from app.index.db import Database
from app.services.audit import AuditLog
from app.services.ingest import IngestPolicy, IngestService
from app.services.metrics import StoreMetrics
from app.storage.base import ObjectStore, ObjectStoreBase
from app.storage.factory import open_store
from app.storage.filesystem import FilesystemStore

__all__ = [
    "IngestStack",
    "build_audit",
    "build_ingest",
    "build_store",
    "ingest_policy",
    "open_ingest",
    "prepare_index",
]


@dataclass(frozen=True, slots=True)
class IngestStack:
    """The index, the store, ingest on them and the audit log (:func:`open_ingest`)."""

    db: Database
    store: ObjectStore
    ingest: IngestService
    audit: AuditLog


@asynccontextmanager
async def open_ingest(settings: Settings) -> AsyncIterator[IngestStack]:
    """Open the index, store, ingest and audit log of ``settings`` (the index must have been
    prepared: :func:`prepare_index`); closed in reverse on exit."""
    db, store, ingest = build_ingest(settings)
    audit = build_audit(settings, db)
    try:
        yield IngestStack(db, store, ingest, audit)
    finally:
        await audit.close()
        await store.close()
        await db.close()


def build_ingest(settings: Settings) -> tuple[Database, ObjectStore, IngestService]:
    """The index's connection pool, the object store (observed when metrics are on) and the
    ingest service on them."""
    db = Database(settings.resolved_database_url(), pool_size=settings.db_pool_size)
    store = build_store(settings)
    if settings.metrics.enabled and isinstance(store, ObjectStoreBase):
        store.observe(StoreMetrics(store.kind))
    policy = ingest_policy(settings)
    spool_dir = settings.spool_dir()
    if isinstance(store, FilesystemStore):
        # spool each part straight into the store's temp dir: the blob write is then a rename
        spool_dir = store.local_tmp_dir()
        policy = replace(policy, spool_memory_bytes=0)
    return db, store, IngestService(db, store, policy, spool_dir)


def build_audit(settings: Settings, db: Database) -> AuditLog:
    """The audit log, batched as the settings say."""
    auth = settings.auth
    return AuditLog(
        db,
        queue_size=auth.audit_queue_size,
        batch_size=auth.audit_batch_size,
        linger=auth.audit_linger_seconds,
        aggregate=auth.audit_aggregate,
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def build_store(settings: Settings) -> ObjectStore:
    """The object store named by the settings."""
    s3, gcs, azure = settings.s3, settings.gcs, settings.azure
    return open_store(
        settings.resolved_storage_url(),
        s3_endpoint=s3.endpoint,
        s3_region=s3.region,
        s3_access_key_id=s3.access_key_id,
        s3_secret_access_key=_secret(s3.secret_access_key),
        s3_allow_http=s3.allow_http,
        s3_server_side_encryption=s3.server_side_encryption,
        s3_sse_kms_key_id=s3.sse_kms_key_id,
        s3_sse_bucket_key_enabled=s3.sse_bucket_key_enabled,
        # obstore's own configuration keys (GCSConfig, AzureConfig); unset ones are left out
        gcs_config={
            "service_account": gcs.service_account_path,
            "service_account_key": _secret(gcs.service_account_key),
        },
        azure_config={
            "account_name": azure.account_name,
            "account_key": _secret(azure.account_key),
            "sas_key": _secret(azure.sas_token),
            "use_emulator": azure.use_emulator or None,
        },
    )


def ingest_policy(settings: Settings) -> IngestPolicy:
    """Ingest's plain-value view of the settings."""
    limits = settings.limits
    return IngestPolicy(
        duplicate_policy=settings.duplicate_policy,
        patient_conflict=settings.patient_conflict,
        sop_class_allow_list=frozenset(settings.sop_class_allow_list),
        zero_preamble=settings.zero_preamble,
        spool_memory_bytes=limits.spool_memory_bytes,
        max_instance_bytes=limits.max_instance_bytes,
        max_inflated_bytes=limits.max_inflated_bytes,
        batch_instances=limits.stow_batch_instances,
        parse_concurrency=limits.parse_concurrency,
    )


async def prepare_index(settings: Settings) -> None:
    """Make the embedded index's directory, and migrate the index when configured to (the
    embedded default is). Processes that share an index must not run it at once (import
    workers take a file lock around it: ``app.services.imports.processes``)."""
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    auto = settings.auto_migrate if settings.auto_migrate is not None else settings.is_sqlite
    if auto:
        await migrate.upgrade(settings.resolved_database_url())

"""The composition root: builds every dependency once from Settings (DESIGN.md §1).

``open_services(settings)`` is used by the HTTP lifespan, the CLI and (later) the DIMSE process,
so every front end runs on the same services.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from app.auth.factory import build_issuer, build_mapping
from app.auth.keys import LocalSigningKey, OidcKeys
from app.auth.oidc import OidcClient
from app.auth.sessions import SessionPolicy
from app.auth.verify import TokenVerifier
from app.config import AuthSettings, Settings
from app.dicom.decoding import DecodeLimits
from app.dicom.render import OutputLimits
from app.index.db import Database
from app.services.access import StudyAccess
from app.services.aes import RemoteAeService
from app.services.audit import AuditLog
from app.services.commitment import CommitmentService
from app.services.decoders import shared_pool
from app.services.delete import DeleteService
from app.services.export import ExportService
from app.services.group_commit import GroupCommit
from app.services.health import HealthService
from app.services.housekeeping import Housekeeping, HousekeepingPlan
from app.services.imports.pipeline import ImportService
from app.services.ingest import IngestService
from app.services.ingest_stack import (
    build_audit,
    build_ingest,
    prepare_index,
)
from app.services.jobs import JobService
from app.services.logins import LoginPolicy, LoginService
from app.services.maintenance import MaintenanceService
from app.services.metrics import ProcessMetrics
from app.services.oidc_login import OidcLoginService
from app.services.pull import PullService, SourceFactory
from app.services.query import QueryService
from app.services.render import RenderService
from app.services.retention import RetentionRule, RetentionService
from app.services.retrieve import RetrieveService
from app.services.sessions import SessionService
from app.services.shares import ShareLinks
from app.services.stats import StatsService
from app.services.studies import StudyCatalog
from app.services.tokens import TokenService
from app.services.users import UserService
from app.storage.base import ObjectStore


@dataclass(slots=True)
class Services:
    """Everything a front end needs."""

    db: Database
    store: ObjectStore
    ingest: IngestService
    #: single-instance stores (C-STORE) sharing index transactions
    group_commit: GroupCommit
    maintenance: MaintenanceService
    retrieve: RetrieveService
    query: QueryService
    delete: DeleteService
    render: RenderService
    audit: AuditLog
    access: StudyAccess
    aes: RemoteAeService
    sessions: SessionService
    tokens: TokenService
    export: ExportService
    imports: ImportService
    #: Storage Commitment: instances verified against the index and their blobs' hashes
    commitment: CommitmentService
    stats: StatsService
    retention: RetentionService
    housekeeping: Housekeeping
    metrics: ProcessMetrics
    users: UserService
    logins: LoginService
    #: the OpenID Connect issuer's sign-in (None: not configured)
    oidc: OidcLoginService | None
    jobs: JobService
    pull: PullService

    @property
    def studies(self) -> StudyCatalog:
        """The web pages' reads (on the services above: nothing of its own to open)."""
        return StudyCatalog(self.query, self.render, self.retrieve)

    @property
    def health(self) -> HealthService:
        """The administration page's health checks."""
        return HealthService(self.db, self.store, self.audit)

    @property
    def shares(self) -> ShareLinks:
        """Share links, on the token registry."""
        return ShareLinks(self.tokens, self.studies, self.audit)

    async def close(self) -> None:
        # background jobs first: they stop interrupted (to be resumed) and say so in the audit
        await self.jobs.close()
        await self.audit.close()
        await self.store.close()
        await self.db.close()


def session_service(settings: Settings, audit: AuditLog, tokens: TokenService) -> SessionService:
    """Browser sessions, signed by the embedded key of ``data_dir`` (created on first use) and
    recorded in the token registry (logout revokes)."""
    auth = settings.auth
    return SessionService(
        lambda: LocalSigningKey.load_or_create(settings.data_dir)[0],
        audit,
        tokens,
        issuer=auth.local_issuer,
        audience=auth.audience,
        mapping=build_mapping(auth),
        policy=SessionPolicy(auth.session_idle_seconds, auth.session_absolute_seconds),
    )


def oidc_login(
    settings: Settings, sessions: SessionService, audit: AuditLog
) -> OidcLoginService | None:
    """The issuer's sign-in for the web pages, when a client id is configured for it (sessions
    are signed by the embedded key, so it needs that key too)."""
    auth = settings.auth
    if not (auth.oidc_issuer and auth.oidc_client_id and auth.local_key):
        return None
    keys = OidcKeys(
        auth.oidc_issuer,
        jwks_uri=auth.oidc_jwks_uri,
        allow_http=auth.oidc_allow_http,
        cache_seconds=auth.jwks_cache_seconds,
        min_refresh_seconds=auth.jwks_min_refresh_seconds,
    )
    mapping = build_mapping(auth)
    client = OidcClient(
        auth.oidc_issuer,
        auth.oidc_client_id,
        keys=keys,
        client_secret=auth.oidc_client_secret.get_secret_value()
        if auth.oidc_client_secret
        else None,
        client_auth=auth.oidc_client_auth,
        scopes=auth.oidc_scopes,
        algorithms=auth.oidc_algorithms,
        allow_http=auth.oidc_allow_http,
        leeway_seconds=auth.leeway_seconds,
        cache_seconds=auth.jwks_cache_seconds,
    )
    # the issuer's access tokens as the API reads them: their permissions count too
    access_tokens = TokenVerifier(
        audience=auth.audience,
        mapping=mapping,
        oidc=keys,
        oidc_audience=auth.oidc_audience,
        oidc_algorithms=auth.oidc_algorithms,
        leeway_seconds=auth.leeway_seconds,
        max_token_bytes=auth.max_token_bytes,
    )
    return OidcLoginService(
        client,
        mapping,
        sessions,
        audit,
        access_tokens=access_tokens,
        label=auth.oidc_login_label,
    )


def login_policy(auth: AuthSettings) -> LoginPolicy:
    """The throttling of failed sign-ins the settings describe."""
    return LoginPolicy(
        max_failures_per_user=auth.login_max_failures_per_user,
        max_failures_per_address=auth.login_max_failures_per_address,
        window=timedelta(seconds=auth.login_failure_window_seconds),
        lockout=timedelta(seconds=auth.login_lockout_seconds),
    )


def retention_rules(settings: Settings) -> tuple[RetentionRule, ...]:
    """The retention rules of the settings, as the retention service takes them."""
    return tuple(
        RetentionRule(r.older_than_days, r.modality, r.study_description)
        for r in settings.retention.rules
    )


def housekeeping_plan(settings: Settings) -> HousekeepingPlan:
    """What the settings schedule inside ``serve``."""
    maintenance, retention = settings.maintenance, settings.retention
    return HousekeepingPlan(
        gc_interval=timedelta(hours=maintenance.gc_interval_hours),
        gc_grace=timedelta(minutes=maintenance.gc_grace_minutes),
        fsck_interval=timedelta(hours=maintenance.fsck_interval_hours),
        fsck_verify_hashes=maintenance.fsck_verify_hashes,
        retention_interval=timedelta(hours=retention.interval_hours),
        retention_rules=retention_rules(settings),
    )


@asynccontextmanager
async def open_services(
    settings: Settings, *, pull_sources: SourceFactory | None = None
) -> AsyncIterator[Services]:
    """Open the database and object store; migrate the embedded default if configured.

    ``pull_sources`` makes the sources of pull jobs: the DIMSE client, which ``app.services``
    cannot import (pynetdicom stays in ``app.dimse``), so the entry points, which may, give it.
    """
    await prepare_index(settings)
    db, store, ingest = build_ingest(settings)
    limits = settings.limits
    retrieve = RetrieveService(
        db,
        store,
        transcode_concurrency=limits.transcode_concurrency,
        metadata_cache_bytes=limits.metadata_cache_bytes,
        decode_limits=DecodeLimits(
            frame_bytes=limits.max_decoded_frame_bytes,
            instance_bytes=limits.max_decoded_instance_bytes,
            render_pixels=limits.max_rendered_pixels,
        ),
        # one pool per process, whatever the number of Services (workers keep no state)
        decoders=shared_pool(limits.decode_processes, limits.decode_process_memory_bytes),
    )
    render = settings.render
    audit = build_audit(settings, db)
    delete = DeleteService(db, store, tombstone_ttl=timedelta(hours=settings.tombstone_hours))
    maintenance = MaintenanceService(db, store)
    retention = RetentionService(db, delete, audit, max_fraction=settings.retention.max_fraction)
    tokens = TokenService(
        db,
        audit,
        # the key is read (or made) when the first token is issued, not on every start
        signer=(lambda: build_issuer(settings)) if settings.auth.local_key else None,
        mapping=build_mapping(settings.auth),
        refresh_seconds=settings.auth.revocation_refresh_seconds,
    )
    users = UserService(db, audit, tokens)
    sessions = session_service(settings, audit, tokens)
    sessions.use_directory(users.permissions_of)
    aes = RemoteAeService(settings.dimse.remote_aes, db)
    jobs = JobService(db, lease_seconds=settings.dimse.pull.lease_seconds)
    services = Services(
        db=db,
        store=store,
        ingest=ingest,
        group_commit=GroupCommit(ingest, max_batch=limits.group_commit_instances),
        maintenance=maintenance,
        retrieve=retrieve,
        query=QueryService(
            db,
            max_results=settings.qido_max_results,
            max_instance_results=settings.qido_max_instance_results,
            count_limit=settings.qido_count_limit,
        ),
        delete=delete,
        render=RenderService(
            db,
            store,
            retrieve,
            concurrency=render.concurrency,
            cache_bytes=render.cache_bytes,
            max_source_bytes=render.max_source_bytes,
            limits=OutputLimits(render.max_output_pixels, render.max_animation_pixels),
            anonymize_salt=render.anonymize_salt.get_secret_value().encode("utf-8")
            if render.anonymize_salt
            else None,
        ),
        audit=audit,
        access=StudyAccess(db),
        aes=aes,
        jobs=jobs,
        pull=PullService(
            db,
            ingest,
            audit,
            aes,
            jobs,
            sources=pull_sources,
            concurrency=settings.dimse.pull.concurrency,
        ),
        sessions=sessions,
        tokens=tokens,
        export=ExportService(retrieve, audit),
        imports=ImportService(ingest, audit),
        commitment=CommitmentService(db, store),
        stats=StatsService(db, getattr(store, "kind", "unknown")),
        retention=retention,
        housekeeping=Housekeeping(db, maintenance, retention, housekeeping_plan(settings)),
        metrics=ProcessMetrics(audit, db),
        users=users,
        logins=LoginService(db, users, audit, login_policy(settings.auth)),
        oidc=oidc_login(settings, sessions, audit),
    )
    try:
        yield services
    finally:
        await services.close()

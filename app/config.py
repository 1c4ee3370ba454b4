"""Settings: one tree, read from ``LIGHTBOX_*`` environment variables (pydantic-settings).

Only entry points (``app.cli``, ``app.main``) and the composition root
(``app.services.container``) read settings; everything below gets plain values.
Nested fields use ``__``: ``LIGHTBOX_S3__ENDPOINT=http://127.0.0.1:9000``.
"""

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.dicom.uids import is_valid_uid

DEFAULT_DATA_DIR = Path("lightbox-data")


class DuplicatePolicy(StrEnum):
    """What STOW-RS / C-STORE do with an SOP Instance UID that is already stored (STOW-09)."""

    #: byte-identical content is a success (idempotent retry); different content fails 0x0111
    REJECT = "reject"
    #: the new object replaces the stored one, reported with WarningReason 0xB000
    OVERWRITE = "overwrite"


class PatientConflictPolicy(StrEnum):
    """A study already held under a different PatientID (STOW-10)."""

    REJECT = "reject"
    ACCEPT = "accept"


class S3Encryption(StrEnum):
    """Server-side encryption of the objects Lightbox writes (``x-amz-server-side-encryption``)."""

    #: SSE-S3: keys managed by S3
    AES256 = "AES256"
    #: SSE-KMS: a KMS key (``sse_kms_key_id``, else the account's ``aws/s3`` key)
    KMS = "aws:kms"
    #: DSSE-KMS: two layers of encryption with a KMS key
    DSSE_KMS = "aws:kms:dsse"


class S3Settings(BaseModel):
    """Connection settings for an ``s3://bucket/prefix`` storage URL."""

    endpoint: str | None = Field(
        None, description="S3 endpoint URL (MinIO, Ceph, ...); AWS if unset"
    )
    region: str = Field("us-east-1", description="S3 region")
    access_key_id: str | None = Field(None, description="access key id (else the AWS defaults)")
    secret_access_key: SecretStr | None = Field(None, description="secret access key")
    allow_http: bool = Field(False, description="allow a plain-http endpoint (tests, local MinIO)")
    server_side_encryption: S3Encryption | None = Field(
        None,
        description="encryption at rest requested on every PUT: AES256 (SSE-S3), aws:kms "
        "(SSE-KMS) or aws:kms:dsse (DSSE-KMS); unset: the bucket's default encryption",
    )
    sse_kms_key_id: str | None = Field(
        None,
        description="KMS key id or ARN for aws:kms / aws:kms:dsse (unset: the account's aws/s3 "
        "key)",
    )
    sse_bucket_key_enabled: bool | None = Field(
        None, description="use an S3 Bucket Key with SSE-KMS (unset: the bucket's setting)"
    )

    @model_validator(mode="after")
    def _kms_key_needs_kms(self) -> "S3Settings":
        if self.sse_kms_key_id and self.server_side_encryption not in (
            S3Encryption.KMS,
            S3Encryption.DSSE_KMS,
        ):
            raise ValueError("sse_kms_key_id needs server_side_encryption aws:kms or aws:kms:dsse")
        return self


class GcsSettings(BaseModel):
    """Credentials for a ``gs://bucket/prefix`` storage URL (``LIGHTBOX_GCS__<NAME>``); unset,
    obstore reads ``GOOGLE_SERVICE_ACCOUNT`` / ``GOOGLE_APPLICATION_CREDENTIALS`` or the
    metadata server."""

    service_account_path: str | None = Field(
        None, description="path of a service account JSON key file"
    )
    service_account_key: SecretStr | None = Field(
        None, description="the service account JSON key itself"
    )


class AzureSettings(BaseModel):
    """Credentials for an Azure storage URL (``az://container/prefix``, ``abfss://...``,
    ``https://account.blob.core.windows.net/container``): ``LIGHTBOX_AZURE__<NAME>``; unset,
    obstore reads ``AZURE_STORAGE_*`` or a managed identity."""

    account_name: str | None = Field(
        None, description="storage account (needed by az:// URLs, which do not name it)"
    )
    account_key: SecretStr | None = Field(None, description="storage account access key")
    sas_token: SecretStr | None = Field(None, description="shared access signature")
    use_emulator: bool = Field(False, description="talk to a local Azurite emulator")


class Limits(BaseModel):
    """Size and concurrency limits."""

    max_request_bytes: int = Field(
        32 * 1024**3, description="largest STOW-RS request body accepted (413 beyond)"
    )
    max_instance_bytes: int = Field(
        4 * 1024**3, description="largest single instance (part) accepted"
    )
    max_inflated_bytes: int = Field(
        1024**3, description="largest inflated size of a deflated-syntax instance (bomb guard)"
    )
    spool_memory_bytes: int = Field(
        4 * 1024**2, description="parts up to this size are spooled in memory, larger ones on disk"
    )
    stow_batch_instances: int = Field(
        64, description="index rows committed per transaction during one STOW request"
    )
    group_commit_instances: int = Field(
        64,
        ge=1,
        description="most single-instance stores (C-STOREs of concurrent associations) that "
        "share one index transaction: those arriving while a commit is in flight go together",
    )
    parse_concurrency: int = Field(4, description="instances parsed at once per process")
    transcode_concurrency: int = Field(
        2, description="instances or frames decoded at once per process (WADO-RS transcoding)"
    )
    metadata_cache_bytes: int = Field(
        64 * 1024**2,
        description="WADO-RS metadata documents kept per process, by ETag (0: no cache)",
    )
    # decoding (issue 19): checked from Rows x Columns x SamplesPerPixel x BitsAllocated (and the
    # codestream headers) before any decoder runs; beyond, 413, or 406 where the stored transfer
    # syntax can be sent instead
    max_decoded_frame_bytes: int = Field(
        512 * 1024**2,
        gt=0,
        description="largest decoded frame produced: frames and pixel data decoded, rendered, "
        "thumbnail, WADO-URI",
    )
    max_decoded_instance_bytes: int = Field(
        1024**3,
        gt=0,
        description="largest pixel data decoded at once: an instance transcoded (WADO-RS, "
        "WADO-URI transferSyntax or anonymize), the frames of a deflated data set",
    )
    max_rendered_pixels: int = Field(
        64 * 1024**2,
        gt=0,
        description="largest frame (Rows x Columns) rendered (rendering takes ~13 bytes a pixel)",
    )
    decode_processes: int = Field(
        2,
        ge=0,
        description="worker processes running the decoders and renderers, started on first use, "
        "so a codec that crashes or cannot allocate stops a worker, not the server (0: threads "
        "of the server process)",
    )
    decode_process_memory_bytes: int = Field(
        4 * 1024**3,
        ge=0,
        description="address space of each decoder process (RLIMIT_AS; 0: unlimited)",
    )


class ServerSettings(BaseModel):
    """Connections (``LIGHTBOX_SERVER__<NAME>``): deadlines for clients that connect and do not
    send (slowloris), and a cap on open connections."""

    header_timeout: float = Field(
        30.0,
        gt=0,
        description="seconds a request head may take to arrive, counted from the connection's "
        "start or from the first byte of a later request; then 408 and the connection is closed",
    )
    body_timeout: float = Field(
        60.0,
        gt=0,
        description="seconds a request body may stall (nothing arrives while the server waits "
        "for it); then 408, the connection is closed and nothing of the request is stored",
    )
    keep_alive_timeout: int = Field(
        30, ge=1, description="seconds an idle connection is kept open between requests"
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="open connections per worker process (keep it under the file descriptor "
        "limit, ulimit -n); a connection beyond is answered 503 and closed at once",
    )


class RenderSettings(BaseModel):
    """Rendered resources, thumbnails and WADO-URI (REND, THUMB, URI)."""

    concurrency: int = Field(2, description="renderings running at once per process (threads)")
    cache_bytes: int = Field(
        64 * 1024**2, description="in-memory cache of rendered images (0 disables it)"
    )
    max_source_bytes: int = Field(
        1024**3, description="largest instance that is decoded for rendering (406 beyond)"
    )
    max_output_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description="most pixels of a scaled rendered image (viewport, WADO-URI rows/columns, "
        "thumbnails): a request for more is 400, and no image is enlarged beyond it",
    )
    max_animation_pixels: int = Field(
        128 * 1024**2,
        ge=1,
        description="most pixels of all frames of one animated GIF; later frames are left out",
    )
    anonymize_salt: SecretStr | None = Field(
        None,
        description="secret from which WADO-URI anonymize=yes derives replacement UIDs; set it "
        "so they stay the same across workers and restarts (default: random per process)",
    )


class AuthSettings(BaseModel):
    """Access control (GEN-06) and the audit trail (GEN-10): ``LIGHTBOX_AUTH__<NAME>``."""

    enabled: bool = Field(
        True, description="require a bearer token on every route but the health checks"
    )
    anonymous_read: bool = Field(
        False, description="let callers without a token read (search, retrieve); never write"
    )
    public_api_docs: bool = Field(
        False,
        description="serve the OpenAPI document (/openapi.json) to anyone; off, it needs an "
        "admin token (the viewers /docs and /redoc, served offline, take it as "
        "/docs#token=<token>; the document is also in openapi/, `lightbox openapi` writes it)",
    )
    deny_as_not_found: bool = Field(
        False, description="answer 404 instead of 403, so callers cannot probe what exists"
    )
    local_issuer: str = Field(
        "lightbox", description="iss of the embedded signing key's tokens (lightbox token create)"
    )
    local_key: bool = Field(
        True, description="accept tokens signed by the embedded key in data_dir/auth"
    )
    audience: str = Field("lightbox", description="required aud of every token")
    oidc_issuer: str | None = Field(
        None, description="external OpenID Connect issuer URL (Keycloak realm, Entra ID, Auth0)"
    )
    oidc_jwks_uri: str | None = Field(
        None, description="JWKS URL (default: from the issuer's discovery document)"
    )
    oidc_audience: str | None = Field(
        None, description="aud of the issuer's tokens (default: audience)"
    )
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"], description="signature algorithms accepted"
    )
    oidc_allow_http: bool = Field(False, description="allow plain-http issuer URLs (tests only)")
    oidc_client_id: str | None = Field(
        None,
        description="the web pages' client id at the OpenID Connect issuer: set, the sign-in "
        "page offers the issuer's sign-in (authorization code with PKCE)",
    )
    oidc_client_secret: SecretStr | None = Field(
        None, description="that client's secret (unset: a public client, PKCE only)"
    )
    oidc_client_auth: Literal["client_secret_basic", "client_secret_post"] = Field(
        "client_secret_basic", description="how the secret is sent to the token endpoint"
    )
    oidc_scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "email"],
        description="scopes asked for at sign-in (add the one that puts roles in the ID token, "
        "if the issuer needs one)",
    )
    oidc_redirect_uri: str | None = Field(
        None,
        description="the callback URL registered at the issuer (default: "
        "<site>/login/oidc/callback, the site from public_base_url or the request)",
    )
    oidc_login_label: str = Field(
        "single sign-on", description="the sign-in button's text: Sign in with <label>"
    )
    jwks_cache_seconds: float = Field(3600, description="how long fetched keys are trusted")
    jwks_min_refresh_seconds: float = Field(
        30, description="at most one JWKS fetch per this interval when a token names an unknown kid"
    )
    leeway_seconds: float = Field(30, description="clock skew allowed on exp and nbf")
    revocation_refresh_seconds: float = Field(
        5.0,
        ge=0,
        description="how often each process re-reads the revoked tokens from the index: a "
        "token revoked on one replica is refused by all within this many seconds (0: read on "
        "every request)",
    )
    max_token_bytes: int = Field(8192, description="longer bearer tokens are refused")
    permission_claims: list[str] = Field(
        default_factory=lambda: ["scope", "scp", "roles"],
        description="claims holding scopes/roles, dotted paths allowed (realm_access.roles)",
    )
    read_values: list[str] = Field(
        default_factory=lambda: ["read", "user/ImagingStudy.read", "system/ImagingStudy.read"],
        description="claim values granting read",
    )
    write_values: list[str] = Field(
        default_factory=lambda: ["write", "user/ImagingStudy.write", "system/ImagingStudy.write"],
        description="claim values granting write (store)",
    )
    delete_values: list[str] = Field(
        default_factory=lambda: ["delete"], description="claim values granting delete"
    )
    admin_values: list[str] = Field(
        default_factory=lambda: ["admin"], description="claim values granting admin (audit)"
    )
    study_claim: str = Field(
        "lightbox_studies", description="claim restricting a token to these StudyInstanceUIDs"
    )
    patient_claim: str = Field(
        "lightbox_patients", description="claim restricting a token to these PatientIDs"
    )
    session_idle_seconds: int = Field(
        1800,
        ge=60,
        description="a browser session ends after this long without a request (the web pages, "
        "or the DICOMweb calls of its viewer)",
    )
    session_absolute_seconds: int = Field(
        43200,
        ge=60,
        description="a browser session ends this long after its sign-in, whatever its use",
    )
    login_max_failures_per_user: int = Field(
        5,
        ge=1,
        description="failed sign-ins of one user name within the window that lock it for "
        "login_lockout_seconds",
    )
    login_max_failures_per_address: int = Field(
        20,
        ge=1,
        description="failed sign-ins from one client address within the window that lock the "
        "address for login_lockout_seconds",
    )
    login_failure_window_seconds: int = Field(
        900, ge=1, description="the window in which failed sign-ins are counted"
    )
    login_lockout_seconds: int = Field(
        900, ge=1, description="how long a locked user name or address is refused"
    )
    audit_queue_size: int = Field(
        10000, description="audit events buffered before requests wait (back-pressure)"
    )
    audit_batch_size: int = Field(256, description="audit events written per transaction")
    audit_linger_seconds: float = Field(
        0.1, ge=0, description="how long the audit writer gathers events into one transaction"
    )
    audit_aggregate: bool = Field(
        True,
        description=(
            "one audit row for the reads of one actor on one series gathered into the same "
            "batch (a viewer's frame requests), with the number of requests, instead of a row "
            "per request"
        ),
    )
    audit_enabled: bool = Field(
        True,
        description="record the audit trail; false is for measurement only (never in production)",
    )


class CorsSettings(BaseModel):
    """Cross-origin access for browser viewers such as OHIF (GEN-09): ``LIGHTBOX_CORS__...``."""

    allow_origins: list[str] = Field(
        default_factory=list, description='origins allowed to call Lightbox (["*"] for any)'
    )
    max_age: int = Field(600, description="seconds a browser may cache a preflight answer")
    resource_policy: str = Field(
        "cross-origin",
        description="Cross-Origin-Resource-Policy on retrieved content (same-site, same-origin)",
    )


# PS3.5 AE VR: up to 16 characters of the default repertoire, no backslash, no control characters
AE_TITLE_PATTERN = r"^[ -\[\]-~]{1,16}$"


def _ae_title(value: str) -> str:
    """Leading and trailing spaces are not significant in an AE title (PS3.5 AE VR)."""
    stripped = value.strip()
    if not stripped:
        raise ValueError("an AE title cannot be blank")
    return stripped


AeTitle = Annotated[str, Field(pattern=AE_TITLE_PATTERN), AfterValidator(_ae_title)]


class RemoteAeSettings(BaseModel):
    """A DICOM peer known by its AE title: a C-MOVE destination, a source to pull from, the
    address a Storage Commitment report goes back to."""

    ae_title: AeTitle = Field(description="the peer's AE title")
    host: str = Field(description="host name or address")
    port: int = Field(description="DIMSE port", ge=1, le=65535)
    tls: bool = Field(False, description="open associations to it over TLS")
    description: str = Field("", description="free text shown to administrators")


class AllowedPeer(BaseModel):
    """One entry of the DIMSE allow-list (DIMSE-01, DIMSE-14): a calling AE title, an address
    (or network), or both; a caller is let in when it matches every field an entry sets."""

    ae_title: AeTitle | None = Field(None, description="the calling AE title (exact match)")
    address: str | None = Field(
        None, description="the caller's IP address or network (10.1.2.3, 10.1.2.0/24, ::1)"
    )

    @field_validator("address")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_network(value.strip(), strict=False)  # ValueError names a bad one
            return value.strip()
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> "AllowedPeer":
        if self.ae_title is None and self.address is None:
            raise ValueError("an allow-list entry needs an ae_title, an address, or both")
        return self


def _uid_list(values: list[str]) -> list[str]:
    for value in values:
        if not is_valid_uid(value):
            raise ValueError(f"not a UID: {value!r}")
    return values


class PullSettings(BaseModel):
    """``lightbox pull`` and ``POST /api/jobs/pull``: migration from a legacy PACS
    (``LIGHTBOX_DIMSE__PULL__<NAME>``)."""

    concurrency: int = Field(
        4, ge=1, le=32, description="studies (or series) pulled at once, one association each"
    )
    timeout: float = Field(
        60.0,
        gt=0,
        description="seconds the source may take to accept or answer (ACSE, DIMSE, "
        "network time-outs of our associations)",
    )
    max_pdu: int = Field(
        1024 * 1024, ge=0, description="largest PDU we receive from the source (0: no limit)"
    )
    lease_seconds: float = Field(
        30.0,
        ge=1,
        description="how long a job's runner holds it without renewing (it renews every sixth "
        "of it, at most every 5 s): past it, the job is interrupted and may be resumed by any "
        "process",
    )


class DimseSettings(BaseModel):
    """The DIMSE service (DICOM networking: C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET):
    ``LIGHTBOX_DIMSE__<NAME>`` (DIMSE-01)."""

    enabled: bool = Field(True, description="start the DIMSE listener with `lightbox serve`")
    ae_title: AeTitle = Field("LIGHTBOX", description="our AE title")
    host: str = Field("127.0.0.1", description="address the DIMSE listener binds")
    port: int = Field(11112, description="DIMSE port", ge=1, le=65535)
    max_pdu: int = Field(
        262144,
        ge=0,
        description="largest PDU we receive, in bytes (0: no limit); large PDUs make C-STORE "
        "cheaper for us, very large ones trouble some old modalities",
    )
    acse_timeout: float = Field(
        30.0, gt=0, description="seconds to wait for an association request or release answer"
    )
    dimse_timeout: float = Field(
        60.0, gt=0, description="seconds to wait for a DIMSE message (a response, a C-CANCEL)"
    )
    network_timeout: float = Field(
        60.0, gt=0, description="seconds an association may stay silent before it is aborted"
    )
    max_associations: int = Field(
        32, ge=1, description="concurrent associations; more are rejected (local limit exceeded)"
    )
    allowed_peers: list[AllowedPeer] = Field(
        default_factory=list,
        description="callers let in, as a JSON list of {ae_title, address} (either or both; "
        "address may be a network); empty: any caller (then `serve` warns when DIMSE listens "
        "beyond loopback without TLS); others are rejected and audited (DIMSE-14)",
    )
    tls_cert: Path | None = Field(
        None, description="TLS certificate chain (PEM): DIMSE over TLS only (PS3.15 B.1)"
    )
    tls_key: Path | None = Field(None, description="the TLS certificate's private key (PEM)")
    tls_ca: Path | None = Field(
        None,
        description="CA certificates (PEM) that callers' certificates must chain to: set, "
        "every caller needs a client certificate; also checks peers we call over TLS",
    )
    private_sop_classes: Annotated[list[str], AfterValidator(_uid_list)] = Field(
        default_factory=list,
        description="private storage SOP Class UIDs accepted by C-STORE besides the standard "
        "ones (DIMSE-03)",
    )

    @model_validator(mode="after")
    def _tls_pairs(self) -> "DimseSettings":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("dimse.tls_cert and dimse.tls_key are set together")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError("dimse.tls_ca needs dimse.tls_cert and dimse.tls_key (TLS on)")
        return self

    @property
    def tls(self) -> bool:
        """Whether the listener speaks TLS."""
        return self.tls_cert is not None

    remote_aes: list[RemoteAeSettings] = Field(
        default_factory=list,
        description="peers known from the settings (JSON list of {ae_title, host, port, tls}); "
        "those added with `lightbox ae add` live in the index",
    )
    pull: PullSettings = Field(default_factory=PullSettings)


class LogFormat(StrEnum):
    """How log lines are written (``LIGHTBOX_LOG_FORMAT``)."""

    #: text on a terminal, JSON lines otherwise (a container, a file, a log shipper)
    AUTO = "auto"
    #: one human-readable line per record
    TEXT = "text"
    #: one JSON object per line: time, level, logger, message, request id, route, status,
    #: duration, actor
    JSON = "json"


class MetricsSettings(BaseModel):
    """Prometheus metrics (``LIGHTBOX_METRICS__<NAME>``): ``GET /metrics`` with an admin token,
    or without one on a separate address of their own."""

    enabled: bool = Field(
        True, description="collect metrics and serve GET /metrics (admin permission)"
    )
    host: str = Field(
        "127.0.0.1",
        description="address of the separate metrics listener (only with metrics.port)",
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="serve /metrics without a token on metrics.host:metrics.port, a port of "
        "its own for the scraper (lightbox serve only; unset: no such listener)",
    )


class RetentionRule(BaseModel):
    """One retention rule: the studies it matches are deleted. Every criterion given must match
    (AND); a study is deleted when any rule matches it (OR)."""

    older_than_days: int = Field(
        ge=1, description="the study's age in days, from its StudyDate (else when received)"
    )
    modality: str | None = Field(
        None, description="only studies with a series of this modality (ModalitiesInStudy)"
    )
    study_description: str | None = Field(
        None,
        description="only studies whose StudyDescription matches this pattern (* and ?, any case)",
    )

    @field_validator("modality")
    @classmethod
    def _modality(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().upper()
        if not value or len(value) > 16 or "\\" in value:
            raise ValueError("a modality is a code of 1 to 16 characters, e.g. CT")
        return value

    @field_validator("study_description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("an empty study_description pattern matches nothing; leave it out")
        return value


class RetentionSettings(BaseModel):
    """Retention: studies deleted by rules (``LIGHTBOX_RETENTION__<NAME>``), by ``lightbox
    retention`` or on a schedule inside ``lightbox serve``."""

    rules: list[RetentionRule] = Field(
        default_factory=list,
        description='JSON list of rules, e.g. [{"older_than_days": 3650}, {"older_than_days": '
        '365, "modality": "SR"}]; empty: nothing is ever deleted by retention',
    )
    interval_hours: float = Field(
        0.0, ge=0, description="run the rules every this many hours inside serve (0: never)"
    )
    max_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="a run that would delete more than this fraction of the studies, or all of "
        "them, is refused (lightbox retention --yes overrides; a scheduled run never does)",
    )


class MaintenanceSettings(BaseModel):
    """gc and fsck on a schedule inside ``lightbox serve`` (``LIGHTBOX_MAINTENANCE__<NAME>``);
    one process of all the replicas and workers runs each (a lease in the index)."""

    gc_interval_hours: float = Field(
        0.0, ge=0, description="run gc every this many hours inside serve (0: never)"
    )
    gc_grace_minutes: float = Field(
        60.0, ge=0, description="gc keeps unreferenced blobs younger than this"
    )
    fsck_interval_hours: float = Field(
        0.0, ge=0, description="run fsck every this many hours inside serve (0: never)"
    )
    fsck_verify_hashes: bool = Field(
        False, description="scheduled fsck re-hashes every blob (reads the whole store)"
    )


class Settings(BaseSettings):
    """Every Lightbox setting; environment variables are ``LIGHTBOX_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="LIGHTBOX_",
        env_nested_delimiter="__",
        extra="ignore",
        # an empty variable is an unset one (compose's ${VAR:-} passes optional settings)
        env_ignore_empty=True,
    )

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8080, description="HTTP port")
    workers: int = Field(1, description="uvicorn worker processes (production: one per core)")
    ssl_certfile: Path | None = Field(
        None, description="TLS certificate (PEM): serve HTTPS (serve --ssl-certfile)"
    )
    ssl_keyfile: Path | None = Field(
        None, description="TLS private key (PEM) of ssl_certfile (serve --ssl-keyfile)"
    )
    worker_timeout: float = Field(
        30.0,
        ge=0,
        description="with several workers: a worker whose event loop is stuck this many seconds "
        "(gunicorn's timeout: whole seconds, at least 2) is killed and replaced (0: never)",
    )
    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="embedded default's data directory (SQLite index, blobs, spool)",
    )
    database_url: str | None = Field(
        None,
        description="sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db "
        "(default: SQLite in data_dir)",
    )
    storage_url: str | None = Field(
        None,
        description="file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix "
        "(or abfss://, https://account.blob.core.windows.net/container) or memory:// "
        "(default: data_dir/blobs)",
    )
    s3: S3Settings = Field(default_factory=S3Settings)
    gcs: GcsSettings = Field(default_factory=GcsSettings)
    azure: AzureSettings = Field(default_factory=AzureSettings)
    dicomweb_root: str = Field("/dicom-web", description="path of the DICOMweb service root")
    public_base_url: str | None = Field(
        None,
        description="absolute URL clients reach the DICOMweb root at, e.g. "
        "https://pacs.example.org/dicom-web (GEN-01); default: from the request",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="client addresses whose X-Forwarded-Proto/Host headers are honoured",
    )
    duplicate_policy: DuplicatePolicy = Field(
        DuplicatePolicy.REJECT, description="reject | overwrite (STOW-09)"
    )
    patient_conflict: PatientConflictPolicy = Field(
        PatientConflictPolicy.REJECT, description="reject | accept (STOW-10)"
    )
    zero_preamble: bool = Field(
        False, description="zero the 128-byte preamble before storing (STOW-18)"
    )
    allow_single_part_stow: bool = Field(
        True, description="accept a single application/dicom body on POST /studies (STOW-03)"
    )
    strict_accept: bool = Field(
        False,
        description="answer 406 to a retrieve without an Accept header, as PS3.18 §8.7.5 says "
        "(default: treat it as */*, as Orthanc does; NEG-04)",
    )
    sop_class_allow_list: list[str] = Field(
        default_factory=list, description="SOP Class UIDs accepted (empty: all)"
    )
    allow_delete: bool = Field(
        True, description="answer DELETE on studies, series and instances (DEL-01); false: 405"
    )
    tombstone_hours: float = Field(
        720.0,
        description="how long a deleted study/series/instance answers 410 Gone instead of 404 "
        "(DEL-04); 0 keeps no tombstones",
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    limits: Limits = Field(default_factory=Limits)
    render: RenderSettings = Field(default_factory=RenderSettings)
    qido_max_results: int = Field(
        1000, ge=1, description="most studies or series one QIDO-RS response holds (QIDO-17)"
    )
    qido_max_instance_results: int = Field(
        10000, ge=1, description="most instances one QIDO-RS response holds (QIDO-17)"
    )
    qido_count_limit: int = Field(
        10000,
        ge=0,
        description="QIDO-RS counts matches exactly up to this many (0: always); beyond, "
        "X-Total-Count is left out and the Warning says 'more than'",
    )
    qido_empty_status: Literal[200, 204] = Field(
        204, description="status of a QIDO-RS search without matches: 204 (PS3.18) or 200 []"
    )
    db_pool_size: int = Field(10, description="database connections per process (PostgreSQL)")
    auto_migrate: bool | None = Field(
        None, description="apply migrations on start (default: only for the SQLite default)"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="the least severe messages logged"
    )
    log_format: LogFormat = Field(
        LogFormat.AUTO,
        description="auto | text | json: auto writes text on a terminal, JSON lines otherwise",
    )
    access_log: bool = Field(
        True,
        description="one log line per request at INFO: method, route template, status, "
        "duration, request id, actor (never the path's values or the query string)",
    )
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    dimse: DimseSettings = Field(default_factory=DimseSettings)

    @field_validator("qido_empty_status", mode="before")
    @classmethod
    def _status_number(cls, value: object) -> object:
        # an environment variable is text: "204" is the literal 204
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("dicomweb_root")
    @classmethod
    def _root(cls, value: str) -> str:
        value = "/" + value.strip("/")
        return "" if value == "/" else value

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'index.db').resolve()}"

    def resolved_storage_url(self) -> str:
        """The storage URL, defaulting to ``data_dir/blobs``."""
        if self.storage_url:
            return self.storage_url
        return (self.data_dir / "blobs").resolve().as_uri()

    def spool_dir(self) -> Path:
        """Where request parts larger than the memory bound are spooled."""
        return self.data_dir / "spool"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url().startswith("sqlite")

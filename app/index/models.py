"""The index schema: one row per study, series and instance (DESIGN.md §3).

Patient data is denormalised into the study row. Every QIDO-04/05 match key of a level is a typed
column of that level (dates as DATE, times as normalised text, person names also upper-cased and
accent-folded in ``*_norm`` columns); each level keeps its ready-to-send DICOM JSON as bytes.
Schema changes go through Alembic migrations only (``alembic/versions``); a test checks that the
migrations produce exactly this metadata on PostgreSQL and SQLite.
"""

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    literal_column,
)
from sqlalchemy import (
    column as sa_column,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL; SQLite's INTEGER holds 64 bits already (and only an INTEGER PRIMARY KEY
# auto-increments)
Int64 = BigInteger().with_variant(Integer(), "sqlite")
Id = Int64
UID = String(64)
#: the characters of a DICOM text column its B-tree indexes on PostgreSQL (revision 0009), which
#: refuses an index entry beyond about 2,700 bytes while an LO value in a non-conformant file can
#: be any length; 500 characters (at most 2,000 bytes of UTF-8) hold every conformant value whole
INDEX_PREFIX_CHARS = 500


def index_prefix(column: Any) -> Any:
    """The indexed prefix of a text column on PostgreSQL (the same prefix on SQLite, too)."""
    return func.substr(column, literal_column("1"), literal_column(str(INDEX_PREFIX_CHARS)))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _trigram(column: str) -> Index:
    """A ``pg_trgm`` GIN index for ``LIKE '%...%'`` on PostgreSQL (a plain index on SQLite)."""
    return Index(
        f"ix_study_trgm_{column}",
        column,
        postgresql_using="gin",
        postgresql_ops={column: "gin_trgm_ops"},
    )


class Study(Base):
    """A study with its patient (QIDO-04/05/21)."""

    __tablename__ = "study"
    # substring searches (OHIF's study list: PatientName=*x*, 00100020=*x*), migration 0002
    __table_args__ = (
        _trigram("patient_name_norm"),
        _trigram("patient_id"),
        _trigram("accession_number"),
        _trigram("study_description"),
        _trigram("referring_physician_name_norm"),
        # the study list's order (StudyDate descending, no date last, then id), migration 0002
        Index("ix_study_list_order", sa_column("study_date").desc(), "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(UID, unique=True)
    patient_id: Mapped[str | None] = mapped_column(Text)
    patient_name: Mapped[str | None] = mapped_column(Text)
    patient_name_norm: Mapped[str | None] = mapped_column(Text)
    issuer_of_patient_id: Mapped[str | None] = mapped_column(Text)
    patient_birth_date: Mapped[date | None] = mapped_column(Date, index=True)
    patient_sex: Mapped[str | None] = mapped_column(Text)
    study_date: Mapped[date | None] = mapped_column(Date, index=True)
    study_time: Mapped[str | None] = mapped_column(String(13), index=True)
    accession_number: Mapped[str | None] = mapped_column(Text)
    referring_physician_name: Mapped[str | None] = mapped_column(Text)
    referring_physician_name_norm: Mapped[str | None] = mapped_column(Text)
    study_id: Mapped[str | None] = mapped_column(Text)
    study_description: Mapped[str | None] = mapped_column(Text)
    timezone_offset: Mapped[str | None] = mapped_column(String(16))
    specific_character_set: Mapped[str | None] = mapped_column(Text)
    num_series: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    num_instances: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    attrs_json: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Series(Base):
    """A series (QIDO-04/05/22)."""

    __tablename__ = "series"
    __table_args__ = (Index("ix_series_study_number", "study_id", "series_number"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    series_uid: Mapped[str] = mapped_column(UID, unique=True)
    study_id: Mapped[int] = mapped_column(Id, ForeignKey("study.id", ondelete="CASCADE"))
    modality: Mapped[str | None] = mapped_column(Text)
    series_number: Mapped[int | None] = mapped_column(Int64, index=True)
    series_description: Mapped[str | None] = mapped_column(Text)
    series_date: Mapped[date | None] = mapped_column(Date, index=True)
    series_time: Mapped[str | None] = mapped_column(String(13))
    body_part_examined: Mapped[str | None] = mapped_column(Text)
    pps_start_date: Mapped[date | None] = mapped_column(Date, index=True)
    pps_start_time: Mapped[str | None] = mapped_column(String(13), index=True)
    # RequestAttributesSequence values, backslash-joined (multi-valued match keys, QIDO-13)
    scheduled_procedure_step_ids: Mapped[str | None] = mapped_column(Text)
    requested_procedure_ids: Mapped[str | None] = mapped_column(Text)
    num_instances: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    attrs_json: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


#: the DICOM text columns that are match keys. On PostgreSQL each one's B-tree holds its prefix
#: (revision 0009; ``..._prefix``, replacing the whole-column one) and a match compares the prefix,
#: which finds the index, and the whole value (``app.index.search``); SQLite, which has no entry
#: limit, keeps its whole-column B-trees
PREFIX_INDEXED: tuple[Any, ...] = (
    Study.patient_id,
    Study.patient_name_norm,
    Study.issuer_of_patient_id,
    Study.patient_sex,
    Study.accession_number,
    Study.referring_physician_name_norm,
    Study.study_id,
    Study.study_description,
    Series.modality,
    Series.series_description,
    Series.body_part_examined,
    Series.scheduled_procedure_step_ids,
    Series.requested_procedure_ids,
)
for _column in PREFIX_INDEXED:
    _name = f"ix_{_column.table.name}_{_column.key}"
    Index(_name, _column).ddl_if(dialect="sqlite")
    Index(f"{_name}_prefix", index_prefix(_column)).ddl_if(dialect="postgresql")


class Instance(Base):
    """An instance: its blob, hash, transfer syntax, metadata and frame index (QIDO-04/23)."""

    __tablename__ = "instance"
    __table_args__ = (Index("ix_instance_series_number", "series_id", "instance_number"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    sop_uid: Mapped[str] = mapped_column(UID, unique=True)
    series_id: Mapped[int] = mapped_column(Id, ForeignKey("series.id", ondelete="CASCADE"))
    study_id: Mapped[int] = mapped_column(
        Id, ForeignKey("study.id", ondelete="CASCADE"), index=True
    )
    sop_class_uid: Mapped[str] = mapped_column(UID, index=True)
    instance_number: Mapped[int | None] = mapped_column(Int64, index=True)
    rows: Mapped[int | None] = mapped_column(Int64)
    columns: Mapped[int | None] = mapped_column(Int64)
    bits_allocated: Mapped[int | None] = mapped_column(Int64)
    number_of_frames: Mapped[int | None] = mapped_column(Int64)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    blob_key: Mapped[str] = mapped_column(Text, index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    attrs_json: Mapped[bytes] = mapped_column(LargeBinary)
    metadata_json: Mapped[bytes] = mapped_column(LargeBinary)
    # FrameIndex.to_json() as orjson bytes; NULL when frames are not byte ranges of the blob
    frame_index: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: the blob opens with the PS3.10 preamble and "DICM" (False: with the File Meta group, as
    #: some STOW clients send it; None: stored before this was recorded, look at the blob)
    part10_prefix: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Tombstone(Base):
    """A deleted study, series or instance, remembered until ``expires_at`` (DEL-04).

    While a tombstone lives, a retrieve of the UID answers 410 Gone instead of 404; storing the
    UID again removes its tombstone (the resource exists again).
    """

    __tablename__ = "tombstone"
    __table_args__ = (Index("ix_tombstone_study_uid", "study_uid"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    #: "study", "series" or "instance"
    level: Mapped[str] = mapped_column(String(8))
    uid: Mapped[str] = mapped_column(UID, unique=True)
    study_uid: Mapped[str] = mapped_column(UID)
    series_uid: Mapped[str | None] = mapped_column(UID)
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


#: the audit columns an admin filters by equality, in the order of :data:`AUDIT_KEYS`' arguments,
#: and the tag of each one's values among the keys (the SQL function of revision 0008)
AUDIT_KEY_TAGS = {"patient_id": "p:", "study_uid": "s:", "actor": "u:", "action": "a:"}
AUDIT_KEY_COLUMNS = tuple(AUDIT_KEY_TAGS)
#: PostgreSQL: the indexed keys of an audit row, each value tagged by its column
AUDIT_KEYS = func.audit_keys(
    *(sa_column(name) for name in AUDIT_KEY_COLUMNS), type_=postgresql.ARRAY(Text)
)
#: the characters of a value :data:`AUDIT_KEYS` keeps (PatientID and actor are unbounded text)
AUDIT_KEY_CHARS = 500


class AuditEvent(Base):
    """One audited transaction (GEN-10): append-only, each row hash-chained to the one before.

    ``hash`` is SHA-256 over ``prev_hash`` and the row's canonical content (see
    ``app.services.audit``); ``seq`` numbers the chain without gaps. On PostgreSQL a trigger
    refuses UPDATE, DELETE and TRUNCATE.
    """

    __tablename__ = "audit_event"
    __table_args__ = (
        # time grows with seq: block-range bounds instead of a B-tree entry per row (a B-tree on
        # SQLite, which has no BRIN)
        Index(
            "ix_audit_event_time",
            "time",
            postgresql_using="brin",
            postgresql_with={"autosummarize": "on"},
        ),
        # PostgreSQL: one GIN index with a pending list finds rows by any of the four (alembic
        # revision 0008 says why); SQLite: a B-tree each
        Index(
            "ix_audit_event_keys",
            AUDIT_KEYS,
            postgresql_using="gin",
            postgresql_with={"fastupdate": "on", "gin_pending_list_limit": "1024"},
        ).ddl_if(dialect="postgresql"),
        *(
            Index(f"ix_audit_event_{name}", name).ddl_if(dialect="sqlite")
            for name in AUDIT_KEY_COLUMNS
        ),
    )

    #: the chain's position, from 1 without gaps; the key (an index entry per row is paid for by
    #: every audited request, so there is no second, surrogate key)
    seq: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer)
    study_uid: Mapped[str | None] = mapped_column(UID)
    series_uid: Mapped[str | None] = mapped_column(UID)
    instance_uid: Mapped[str | None] = mapped_column(UID)
    patient_id: Mapped[str | None] = mapped_column(Text)
    count: Mapped[int | None] = mapped_column(Integer)
    #: requests an aggregated row stands for (NULL: one); hashed only when set
    requests: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


def on_this_dialect(dialect: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` for a database of ``dialect``: an index the models create on
    another dialect only (``Index.ddl_if``) is not compared there (Alembic does not read
    ``ddl_if``)."""

    def include(obj: Any, _name: str | None, kind: str, reflected: bool, _other: Any) -> bool:
        wanted = getattr(obj, "_ddl_if", None) if kind == "index" and not reflected else None
        return wanted is None or wanted.dialect in (None, dialect)

    return include


class AuditJournal(Base):
    """An audit event committed in the transaction of the write it describes, not chained yet.

    A store or a delete adds its row here inside its own index transaction, so the row is exactly
    as durable as the write (``app.services.audit`` says why not straight into the chain). The
    audit writer deletes it in the transaction that appends its content, or the row of the
    request that stands for it, to :class:`AuditEvent`: at every moment a committed write has its
    row here or in the chain. A row lives about one writer linger; after a crash, until the next
    start. The columns are unbounded text: nothing in a row can make the write it rides with
    fail (the chain's bounds apply when it is chained). On PostgreSQL a trigger refuses UPDATE.
    """

    __tablename__ = "audit_journal"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    status: Mapped[int | None] = mapped_column(Integer)
    study_uid: Mapped[str | None] = mapped_column(Text)
    series_uid: Mapped[str | None] = mapped_column(Text)
    instance_uid: Mapped[str | None] = mapped_column(Text)
    patient_id: Mapped[str | None] = mapped_column(Text)
    count: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)


class IssuedToken(Base):
    """A bearer token the embedded issuer signed: the registry ``lightbox token list`` shows and
    the deny list the verifier checks (a revoked row whose token has not expired yet).

    The token itself is never stored (it is a secret), only its ``jti`` and what it grants.
    ``scopes`` is space-separated (the OAuth ``scope`` claim's form); ``study_uids`` and
    ``patient_ids`` are JSON arrays, NULL when the token is not restricted.
    """

    __tablename__ = "issued_token"
    __table_args__ = (
        # the verifiers' refresh reads the revoked tokens still alive (app.index.tokens.revoked)
        Index("ix_issued_token_revoked", "revoked_at", "expires_at"),
    )

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: who asked for it: "cli", "session" (a web login), "share" (a share link)
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text, index=True)
    scopes: Mapped[str] = mapped_column(Text)
    study_uids: Mapped[str | None] = mapped_column(Text)
    patient_ids: Mapped[str | None] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_by: Mapped[str | None] = mapped_column(Text)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(Text)
    revoke_reason: Mapped[str | None] = mapped_column(Text)


class Lease(Base):
    """A housekeeping job's turn (gc, fsck, retention): the process that claims the row runs the
    job once, and no other claims it before ``expires_at`` (``app.index.leases``). Several
    replicas and workers thus run a scheduled job once per interval between them."""

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: what the last run found or did, in words
    detail: Mapped[str | None] = mapped_column(Text)


class UserAccount(Base):
    """An embedded user (issue 22): signs in with a password; the role gives the permissions.

    ``username`` is normalised (``app.auth.passwords.normalize_username``: NFKC, lower case), so
    the unique key makes names unique whatever their case; ``password_hash`` is an argon2id PHC
    string (the password itself is never stored).
    """

    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    password_changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginFailure(Base):
    """Failed sign-ins counted per user name (``u:<name>``) and per client address
    (``a:<address>``), in the index so that every replica counts the same (issue 22).

    ``failures`` counts since ``window_start``; a key with the configured number of failures is
    locked until ``last_failure`` plus the lockout. Rows are removed once stale.
    """

    __tablename__ = "login_failure"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_failure: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class RemoteAe(Base):
    """A DICOM peer registered at run time (``lightbox ae add``, ``/api/aes``): a C-MOVE
    destination, a source to pull from, where a Storage Commitment report goes back to.

    In the index so that every replica knows the same peers; the static ones of the settings
    (``dimse.remote_aes``) are not stored here. AE titles are case-sensitive (PS3.5), so the
    title is unique as written (leading and trailing spaces removed).
    """

    __tablename__ = "remote_ae"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    tls: Mapped[bool] = mapped_column(Boolean)
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """A long-running administrative task (today: ``pull``, a migration from a legacy PACS).

    In the index, so that any replica answers for any job and a job outlives the process that
    ran it: the runner holds a *lease* (``runner``, ``lease_until``) that it renews while it works;
    a job whose lease ran out is seen as interrupted, and running it again resumes it. The
    progress counters are the runner's, written with each heartbeat; a cancel asked on any
    replica is a flag the runner reads with its next heartbeat.
    """

    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_fingerprint", "fingerprint"),
        Index("ix_job_created_at", "created_at"),
    )

    #: random (uuid4 hex): unguessable, made by any replica without coordination
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    #: SHA-256 of the kind and the canonical parameters: the same request finds its job again
    fingerprint: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[Any] = mapped_column(JSON)
    #: pending, running, completed, failed, cancelled, interrupted
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(Text)
    runner: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested: Mapped[bool] = mapped_column(Boolean)
    units_total: Mapped[int] = mapped_column(Integer)
    units_done: Mapped[int] = mapped_column(Integer)
    units_skipped: Mapped[int] = mapped_column(Integer)
    units_failed: Mapped[int] = mapped_column(Integer)
    instances_total: Mapped[int] = mapped_column(Int64)
    instances_stored: Mapped[int] = mapped_column(Int64)
    instances_held: Mapped[int] = mapped_column(Int64)
    instances_failed: Mapped[int] = mapped_column(Int64)
    bytes_stored: Mapped[int] = mapped_column(Int64)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobItem(Base):
    """One unit of a job's work (a study, or a series with ``--level SERIES``) and its outcome:
    what re-running the job skips (done, skipped) and what it tries again (pending, failed)."""

    __tablename__ = "job_item"
    __table_args__ = (UniqueConstraint("job_id", "key"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("job.id", ondelete="CASCADE"))
    #: the unit's UID: the StudyInstanceUID, or the SeriesInstanceUID at series level
    key: Mapped[str] = mapped_column(UID)
    study_uid: Mapped[str] = mapped_column(UID)
    series_uid: Mapped[str | None] = mapped_column(UID)
    patient_id: Mapped[str | None] = mapped_column(Text)
    #: pending, done, skipped (everything was held already), failed
    state: Mapped[str] = mapped_column(String(16))
    #: instances the source announced (NumberOf...RelatedInstances, or counted), if known
    expected: Mapped[int | None] = mapped_column(Integer)
    stored: Mapped[int] = mapped_column(Integer)
    held: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Int64)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

"""One GIN index finds audit rows by patient, study, actor or action (PostgreSQL).

Every audited request appends a row, and each index on ``audit_event`` is paid for once per
row, on the same machine that serves the requests. Four B-trees (``patient_id``, ``study_uid``,
``actor``, ``action``) cost more PostgreSQL CPU than the rest of the row, and more than doubled
the audit's effect on a search's 95th-percentile latency (bench/README.md, eighth sitting): each
insert descends four trees at random places.

They become one GIN index over ``audit_keys(patient_id, study_uid, actor, action)``, the four
values tagged by kind (``p:``, ``s:``, ``u:``, ``a:``). With ``fastupdate`` a new row's keys go
to the index's pending list, an append; they reach the index proper in bulk and sorted, when the
list passes ``gin_pending_list_limit`` (1 MB here: about 2,000 search rows; 650 kB of them
were merged in 16 ms on the bench machine) or when (auto)vacuum runs. A search reads the
pending list as well, so a row is found as soon as it is committed. The filters of
``GET /api/audit`` and ``lightbox audit export`` use the index through the same expression
(``app.services.audit``).

SQLite keeps its B-trees: there the writer is one process, and nothing else shares its cost.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 12:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: the B-trees this revision replaces on PostgreSQL: (name, column)
_BTREES = (
    ("ix_audit_event_patient_id", "patient_id"),
    ("ix_audit_event_study_uid", "study_uid"),
    ("ix_audit_event_actor", "actor"),
    ("ix_audit_event_action", "action"),
)

#: the keys of a row; a PatientID or an actor (a token's subject) is indexed by its first 500
#: characters (at most 2,000 bytes), so that no value can exceed the largest GIN entry (about
#: 2,700 bytes) and make its batch fail; the filters compare the whole column as well
AUDIT_KEYS_FUNCTION = """
CREATE FUNCTION audit_keys(patient_id text, study_uid text, actor text, action text)
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_remove(
        ARRAY['p:' || left(patient_id, 500), 's:' || study_uid, 'u:' || left(actor, 500),
              'a:' || action],
        NULL
    )
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(AUDIT_KEYS_FUNCTION)
    for name, _ in _BTREES:
        op.execute(f"DROP INDEX {name}")
    op.execute(
        "CREATE INDEX ix_audit_event_keys ON audit_event USING gin "
        "(audit_keys(patient_id, study_uid, actor, action)) "
        "WITH (fastupdate = on, gin_pending_list_limit = 1024)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_audit_event_keys")
    op.execute("DROP FUNCTION audit_keys(text, text, text, text)")
    for name, column in _BTREES:
        op.execute(f"CREATE INDEX {name} ON audit_event ({column})")

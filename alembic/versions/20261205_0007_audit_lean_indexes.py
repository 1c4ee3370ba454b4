"""Fewer indexes to maintain per audit row: ``seq`` is the key, ``time`` a BRIN index.

Every audited request appends a row, so each index on ``audit_event`` is paid for once per
request. Two of them bought nothing:

- ``id`` (a bigserial primary key) numbered the rows a second time beside ``seq``, which is unique,
  gapless and what every reader orders by. ``seq`` becomes the primary key and ``id``, its sequence
  (a ``nextval`` per row) and its index go.
- ``time`` grows with ``seq`` (rows are appended as the events end, in batches a fraction of a
  second apart), which is what a BRIN index is for: a few block ranges' bounds instead of a
  B-tree entry per row, and time-range filters read only the ranges that can match
  (``autosummarize`` summarises each range as it fills). SQLite has no BRIN: it keeps a B-tree.

The hash chain covers neither ``id`` nor any index: every stored hash stays valid.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # DDL only: the append-only row triggers do not fire, and no row is rewritten
        op.execute("ALTER TABLE audit_event DROP CONSTRAINT pk_audit_event")
        op.execute("ALTER TABLE audit_event DROP COLUMN id")
        op.execute(
            "ALTER TABLE audit_event DROP CONSTRAINT uq_audit_event_seq, "
            "ADD CONSTRAINT pk_audit_event PRIMARY KEY (seq)"
        )
        op.execute("DROP INDEX ix_audit_event_time")
        op.execute(
            "CREATE INDEX ix_audit_event_time ON audit_event USING brin (time) "
            "WITH (autosummarize = on)"
        )
        return
    # SQLite: the table is copied into its new shape; seq becomes the rowid (INTEGER PRIMARY KEY)
    with op.batch_alter_table("audit_event", recreate="always") as batch_op:
        batch_op.drop_constraint("uq_audit_event_seq", type_="unique")
        batch_op.drop_column("id")
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), type_=_ID)
        batch_op.create_primary_key("pk_audit_event", ["seq"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_audit_event_time")
        op.execute("CREATE INDEX ix_audit_event_time ON audit_event (time)")
        op.execute(
            "ALTER TABLE audit_event DROP CONSTRAINT pk_audit_event, "
            "ADD CONSTRAINT uq_audit_event_seq UNIQUE (seq)"
        )
        # rows numbered anew (in storage order): nothing outside this table referred to id
        op.execute("ALTER TABLE audit_event ADD COLUMN id BIGSERIAL")
        op.execute("ALTER TABLE audit_event ADD CONSTRAINT pk_audit_event PRIMARY KEY (id)")
        return
    with op.batch_alter_table("audit_event", recreate="always") as batch_op:
        batch_op.drop_constraint("pk_audit_event", type_="primary")
        batch_op.alter_column("seq", existing_type=_ID, type_=sa.BigInteger())
        batch_op.add_column(sa.Column("id", _ID, autoincrement=True, nullable=False))
        batch_op.create_primary_key("pk_audit_event", ["id"])
        batch_op.create_unique_constraint("uq_audit_event_seq", ["seq"])

"""The audit journal: a write's audit row, committed in the write's own transaction.

A store or a delete adds one row to ``audit_journal`` inside the index transaction that makes
the write, so the row is as durable as the write; the audit writer moves it into the hash chain
later (``app.services.audit`` explains the design). Rows are inserted and deleted, never changed:
on PostgreSQL a trigger refuses UPDATE. No index besides the key: a row lives for about the
writer's linger, and is found by its id. A downgrade drops the rows not chained yet: start the
server once before (it chains what a crash left).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = """
CREATE FUNCTION audit_journal_no_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_journal rows are never changed (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "audit_journal",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("client_id", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("study_uid", sa.Text(), nullable=True),
        sa.Column("series_uid", sa.Text(), nullable=True),
        sa.Column("instance_uid", sa.Text(), nullable=True),
        sa.Column("patient_id", sa.Text(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_journal")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_journal_no_update BEFORE UPDATE ON audit_journal "
            "FOR EACH ROW EXECUTE FUNCTION audit_journal_no_update()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_journal_no_update ON audit_journal")
        op.execute("DROP FUNCTION IF EXISTS audit_journal_no_update()")
    op.drop_table("audit_journal")

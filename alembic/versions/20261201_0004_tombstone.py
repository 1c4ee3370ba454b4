"""Tombstones of deleted studies, series and instances (DEL-04).

Revision ID: 0004
Revises: 0001
Create Date: 2026-12-01 21:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tombstone",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tombstone")),
        sa.UniqueConstraint("uid", name=op.f("uq_tombstone_uid")),
    )
    with op.batch_alter_table("tombstone", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tombstone_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index("ix_tombstone_study_uid", ["study_uid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tombstone", schema=None) as batch_op:
        batch_op.drop_index("ix_tombstone_study_uid")
        batch_op.drop_index(batch_op.f("ix_tombstone_expires_at"))
    op.drop_table("tombstone")

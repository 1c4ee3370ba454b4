"""Remote AEs in the index: the DICOM peers registered at run time (``lightbox ae``,
``/api/aes``), so that every replica knows the same ones (issue 21, point 6).

Revision ID: 0011
Revises: 0014
Create Date: 2026-12-07 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0011"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "remote_ae",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("tls", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remote_ae")),
        sa.UniqueConstraint("ae_title", name=op.f("uq_remote_ae_ae_title")),
    )


def downgrade() -> None:
    op.drop_table("remote_ae")

"""The token registry: every token the embedded issuer signs, and the deny list.

``lightbox token create`` (and the web login and share links) record each token they issue
(its jti, subject, scopes, restrictions, times, kind and who asked for it); ``lightbox token
revoke`` and ``DELETE /api/tokens/{jti}`` set ``revoked_at``, and every verifier refuses a
revoked token that has not expired yet. The token itself is never stored.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-07 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "issued_token",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("study_uids", sa.Text(), nullable=True),
        sa.Column("patient_ids", sa.Text(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.Text(), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_issued_token")),
    )
    op.create_index(
        "ix_issued_token_revoked", "issued_token", ["revoked_at", "expires_at"], unique=False
    )
    op.create_index(op.f("ix_issued_token_subject"), "issued_token", ["subject"], unique=False)
    op.create_index(
        op.f("ix_issued_token_expires_at"), "issued_token", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_table("issued_token")

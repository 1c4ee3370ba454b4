"""The number of requests an aggregated audit row stands for.

Reads of one actor on one series that the audit writer gathers into one batch (a viewer fetching
a series frame by frame) become one row with ``requests`` set. Rows written before this revision,
and rows standing for one request, hold NULL; the chain hash covers ``requests`` only when it is
set, so their hashes stay valid.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a new nullable column rewrites no row, and fires no row trigger (the append-only one)
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requests", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_column("requests")

"""Whether each blob opens with the PS3.10 preamble and "DICM".

Retrieve sends every instance as a PS3.10 file, adding the 132-byte prefix to blobs stored
without it (some STOW clients send the File Meta group first). Recording which at ingest gives
each part's exact length before any blob is opened, so a whole multipart response can be sent
with a Content-Length. Rows stored before this revision hold NULL: their blobs are looked at.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-04 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("part10_prefix", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_column("part10_prefix")

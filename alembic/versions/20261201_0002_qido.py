"""QIDO-RS: trigram indexes for substring searches on PostgreSQL (issue 3, performance).

``PatientName=*abc*``, ``00100020=*abc*`` (OHIF's study list) and friends compile to
``LIKE '%ABC%'``, which no B-tree can serve; a ``pg_trgm`` GIN index can, prefix patterns
included. On SQLite the same names are plain indexes (``postgresql_*`` options do not apply
there), so the schema stays identical to the models on both databases.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (index name, column) on the study table
TRIGRAM_INDEXES: tuple[tuple[str, str], ...] = (
    ("ix_study_trgm_patient_name_norm", "patient_name_norm"),
    ("ix_study_trgm_patient_id", "patient_id"),
    ("ix_study_trgm_accession_number", "accession_number"),
    ("ix_study_trgm_study_description", "study_description"),
    ("ix_study_trgm_referring_physician_name_norm", "referring_physician_name_norm"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in TRIGRAM_INDEXES:
        op.create_index(
            name,
            "study",
            [column],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={column: "gin_trgm_ops"},
        )
    op.create_index("ix_study_list_order", "study", [sa.column("study_date").desc(), "id"])


def downgrade() -> None:
    op.drop_index("ix_study_list_order", table_name="study")
    for name, _ in reversed(TRIGRAM_INDEXES):
        op.drop_index(name, table_name="study")

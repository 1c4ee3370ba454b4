"""Every value a DICOM file may hold fits the index on PostgreSQL as it does on SQLite (issue 19).

PostgreSQL refused instances SQLite stored:

- an IS value beyond 32 bits (IS has up to 12 characters: -99999999999 to 999999999999) in an
  INTEGER column, or a US attribute an explicit VR made UL: the DICOM integer columns become
  BIGINT, as SQLite's INTEGER already is (the table is rewritten once, under an exclusive lock);
- a text value over about 2,700 bytes (a long StudyDescription in a non-conformant file) in a
  B-tree, which refuses such an entry: the B-tree of each DICOM text column becomes one on its
  first 500 characters (``substr(column, 1, 500)``, at most 2,000 bytes, ``ix_..._prefix``);
  the columns keep the whole value and a match compares both (``app.index.search``). The
  trigram indexes (GIN: no entry limit) stay as they are.

(NUL in text, the third refusal, is mapped away before the insert: ``app.dicom.text.storable``.)

SQLite changes nothing: its INTEGER has 64 bits and its B-trees no entry limit. A downgrade
fails when a stored value no longer fits the older schema.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: the DICOM integer columns, per table
_INTEGERS = {
    "series": ("series_number",),
    "instance": ("instance_number", "rows", "columns", "bits_allocated", "number_of_frames"),
}
#: the DICOM text columns indexed by their prefix, per table (``app.index.models.PREFIX_INDEXED``)
_PREFIXED = {
    "study": (
        "patient_id",
        "patient_name_norm",
        "issuer_of_patient_id",
        "patient_sex",
        "accession_number",
        "referring_physician_name_norm",
        "study_id",
        "study_description",
    ),
    "series": (
        "modality",
        "series_description",
        "body_part_examined",
        "scheduled_procedure_step_ids",
        "requested_procedure_ids",
    ),
}
_PREFIX_CHARS = 500


def _alter_integers(type_name: str) -> None:
    for table, columns in _INTEGERS.items():
        changes = ", ".join(f"ALTER COLUMN {c} TYPE {type_name}" for c in columns)
        op.execute(f"ALTER TABLE {table} {changes}")  # one rewrite per table


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _alter_integers("BIGINT")
    for table, columns in _PREFIXED.items():
        for column in columns:
            op.drop_index(f"ix_{table}_{column}", table_name=table)
            op.create_index(
                f"ix_{table}_{column}_prefix",
                table,
                [sa.text(f"substr({column}, 1, {_PREFIX_CHARS})")],
            )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in _PREFIXED.items():
        for column in columns:
            op.drop_index(f"ix_{table}_{column}_prefix", table_name=table)
            op.create_index(f"ix_{table}_{column}", table, [column])
    _alter_integers("INTEGER")

"""Initial index schema: study, series, instance (DESIGN.md §3).

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 07:26:55.627305
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "study",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=True),
        sa.Column("patient_name", sa.Text(), nullable=True),
        sa.Column("patient_name_norm", sa.Text(), nullable=True),
        sa.Column("issuer_of_patient_id", sa.Text(), nullable=True),
        sa.Column("patient_birth_date", sa.Date(), nullable=True),
        sa.Column("patient_sex", sa.Text(), nullable=True),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("study_time", sa.String(length=13), nullable=True),
        sa.Column("accession_number", sa.Text(), nullable=True),
        sa.Column("referring_physician_name", sa.Text(), nullable=True),
        sa.Column("referring_physician_name_norm", sa.Text(), nullable=True),
        sa.Column("study_id", sa.Text(), nullable=True),
        sa.Column("study_description", sa.Text(), nullable=True),
        sa.Column("timezone_offset", sa.String(length=16), nullable=True),
        sa.Column("specific_character_set", sa.Text(), nullable=True),
        sa.Column("num_series", sa.Integer(), server_default="0", nullable=False),
        sa.Column("num_instances", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attrs_json", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study")),
        sa.UniqueConstraint("study_uid", name=op.f("uq_study_study_uid")),
    )
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_study_accession_number"), ["accession_number"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_study_issuer_of_patient_id"), ["issuer_of_patient_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_study_patient_birth_date"), ["patient_birth_date"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_study_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_study_patient_name_norm"), ["patient_name_norm"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_study_patient_sex"), ["patient_sex"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_study_referring_physician_name_norm"),
            ["referring_physician_name_norm"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_study_study_date"), ["study_date"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_study_study_description"), ["study_description"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_study_study_id"), ["study_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_study_study_time"), ["study_time"], unique=False)

    op.create_table(
        "series",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("study_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("modality", sa.Text(), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("series_description", sa.Text(), nullable=True),
        sa.Column("series_date", sa.Date(), nullable=True),
        sa.Column("series_time", sa.String(length=13), nullable=True),
        sa.Column("body_part_examined", sa.Text(), nullable=True),
        sa.Column("pps_start_date", sa.Date(), nullable=True),
        sa.Column("pps_start_time", sa.String(length=13), nullable=True),
        sa.Column("scheduled_procedure_step_ids", sa.Text(), nullable=True),
        sa.Column("requested_procedure_ids", sa.Text(), nullable=True),
        sa.Column("num_instances", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attrs_json", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_series_study_id_study"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint("series_uid", name=op.f("uq_series_series_uid")),
    )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_series_body_part_examined"), ["body_part_examined"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_series_modality"), ["modality"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_series_pps_start_date"), ["pps_start_date"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_series_pps_start_time"), ["pps_start_time"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_series_requested_procedure_ids"),
            ["requested_procedure_ids"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_series_scheduled_procedure_step_ids"),
            ["scheduled_procedure_step_ids"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_series_series_date"), ["series_date"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_series_series_description"), ["series_description"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_series_series_number"), ["series_number"], unique=False
        )
        batch_op.create_index("ix_series_study_number", ["study_id", "series_number"], unique=False)

    op.create_table(
        "instance",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sop_uid", sa.String(length=64), nullable=False),
        sa.Column(
            "series_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("study_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("bits_allocated", sa.Integer(), nullable=True),
        sa.Column("number_of_frames", sa.Integer(), nullable=True),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("attrs_json", sa.LargeBinary(), nullable=False),
        sa.Column("metadata_json", sa.LargeBinary(), nullable=False),
        sa.Column("frame_index", sa.LargeBinary(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["series.id"],
            name=op.f("fk_instance_series_id_series"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_instance_study_id_study"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance")),
        sa.UniqueConstraint("sop_uid", name=op.f("uq_instance_sop_uid")),
    )
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_instance_blob_key"), ["blob_key"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_instance_instance_number"), ["instance_number"], unique=False
        )
        batch_op.create_index(
            "ix_instance_series_number", ["series_id", "instance_number"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_instance_sop_class_uid"), ["sop_class_uid"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_instance_study_id"), ["study_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instance_study_id"))
        batch_op.drop_index(batch_op.f("ix_instance_sop_class_uid"))
        batch_op.drop_index("ix_instance_series_number")
        batch_op.drop_index(batch_op.f("ix_instance_instance_number"))
        batch_op.drop_index(batch_op.f("ix_instance_blob_key"))

    op.drop_table("instance")
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_index("ix_series_study_number")
        batch_op.drop_index(batch_op.f("ix_series_series_number"))
        batch_op.drop_index(batch_op.f("ix_series_series_description"))
        batch_op.drop_index(batch_op.f("ix_series_series_date"))
        batch_op.drop_index(batch_op.f("ix_series_scheduled_procedure_step_ids"))
        batch_op.drop_index(batch_op.f("ix_series_requested_procedure_ids"))
        batch_op.drop_index(batch_op.f("ix_series_pps_start_time"))
        batch_op.drop_index(batch_op.f("ix_series_pps_start_date"))
        batch_op.drop_index(batch_op.f("ix_series_modality"))
        batch_op.drop_index(batch_op.f("ix_series_body_part_examined"))

    op.drop_table("series")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_study_time"))
        batch_op.drop_index(batch_op.f("ix_study_study_id"))
        batch_op.drop_index(batch_op.f("ix_study_study_description"))
        batch_op.drop_index(batch_op.f("ix_study_study_date"))
        batch_op.drop_index(batch_op.f("ix_study_referring_physician_name_norm"))
        batch_op.drop_index(batch_op.f("ix_study_patient_sex"))
        batch_op.drop_index(batch_op.f("ix_study_patient_name_norm"))
        batch_op.drop_index(batch_op.f("ix_study_patient_id"))
        batch_op.drop_index(batch_op.f("ix_study_patient_birth_date"))
        batch_op.drop_index(batch_op.f("ix_study_issuer_of_patient_id"))
        batch_op.drop_index(batch_op.f("ix_study_accession_number"))

    op.drop_table("study")

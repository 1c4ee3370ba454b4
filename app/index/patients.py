"""Which patient a study is filed under: the look-ups of the access checks (a grant by PatientID)
and of the audit trail (a row naming a study is filed under its patient too)."""

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import Study

__all__ = ["patient_id", "patient_ids"]


async def patient_id(conn: AsyncConnection, study_uid: str) -> str | None:
    """The PatientID a study is filed under (``None`` when the study is not held)."""
    return (
        await conn.execute(select(Study.patient_id).where(Study.study_uid == study_uid))
    ).scalar_one_or_none()


async def patient_ids(conn: AsyncConnection, study_uids: Collection[str]) -> dict[str, str | None]:
    """The PatientID of each study among ``study_uids`` that is held (one query)."""
    if not study_uids:
        return {}
    rows = await conn.execute(
        select(Study.study_uid, Study.patient_id).where(Study.study_uid.in_(study_uids))
    )
    return dict(rows.all())

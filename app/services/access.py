"""Lookups the access checks need (scoped grants by PatientID), one indexed query each."""

from app.index.db import Database
from app.index.patients import patient_id

__all__ = ["StudyAccess"]


class StudyAccess:
    """What a grant check must know about a study."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def patient_id(self, study_uid: str) -> str | None:
        """The PatientID a study is filed under (``None`` when the study is not held)."""
        async with self._db.read() as conn:
            return await patient_id(conn, study_uid)

"""Which patient a study is filed under (``app.index.patients``), on both databases."""

from sqlalchemy import text

from app.index.db import Database
from app.index.patients import patient_id, patient_ids

_STUDY = "INSERT INTO study (study_uid, patient_id, attrs_json) VALUES (:uid, :patient, '')"


async def test_a_study_names_its_patient(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(
            text(_STUDY), [{"uid": "1.1", "patient": "P1"}, {"uid": "1.2", "patient": None}]
        )
    async with db.read() as conn:
        assert await patient_id(conn, "1.1") == "P1"
        assert await patient_id(conn, "1.2") is None  # held, with no PatientID
        assert await patient_id(conn, "1.3") is None  # not held
        assert await patient_ids(conn, {"1.1", "1.2", "1.3"}) == {"1.1": "P1", "1.2": None}
        assert await patient_ids(conn, []) == {}

"""What the index holds of a list of SOP instances, for Storage Commitment (DIMSE-06): each one's
SOP class, blob, size and content hash, and the study and patient it is filed under."""

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.index.models import Instance, Study

__all__ = ["Held", "held"]

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Held:
    """One instance as the index holds it."""

    sop_uid: str
    sop_class_uid: str
    blob_key: str
    size: int
    sha256: str
    study_uid: str
    patient_id: str | None


async def held(conn: AsyncConnection, sop_uids: Iterable[str]) -> dict[str, Held]:
    """The instances of ``sop_uids`` the index holds, by SOP Instance UID."""
    uids = sorted(set(sop_uids))
    found: dict[str, Held] = {}
    for start in range(0, len(uids), _CHUNK):
        rows = await conn.execute(
            select(
                Instance.sop_uid,
                Instance.sop_class_uid,
                Instance.blob_key,
                Instance.size,
                Instance.sha256,
                Study.study_uid,
                Study.patient_id,
            )
            .join(Study, Study.id == Instance.study_id)
            .where(Instance.sop_uid.in_(uids[start : start + _CHUNK]))
        )
        for row in rows:
            found[row.sop_uid] = Held(*row)
    return found

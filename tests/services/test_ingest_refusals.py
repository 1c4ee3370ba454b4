"""A value the index database refuses is the data's fault, not a lack of resources (issue 19).

Ingest makes every value storable before the insert (``tests/api/test_stow_edge_values.py``);
should one still reach the database, its instance alone is refused with 0xC000 "cannot
understand", and the rest of its batch is stored. The refused value here is a Rows beyond 64
bits, which the parse never hands over: the service below stands for a defect in that.
"""

import logging
from dataclasses import replace

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from app.dicom.instance import ParsedInstance
from app.dicom.status import Status
from app.index.models import Instance
from app.services.container import Services
from app.services.ingest import IngestService
from app.services.spool import SpooledPart
from tests.factories import make_instance


class _LeakyIngest(IngestService):
    """Ingest whose parse lets an unstorable value through for PatientID ``LEAK``."""

    async def parse(self, part: SpooledPart) -> ParsedInstance:
        parsed = await super().parse(part)
        if parsed.study.patient_id == "LEAK":
            parsed = replace(parsed, instance=replace(parsed.instance, rows=2**63))
        return parsed


async def test_a_refused_value_fails_its_instance_alone(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    real = services.ingest
    ingest = _LeakyIngest(real.db, real.store, real.policy, real.spool_dir)
    session = ingest.session()
    for patient in ("P1", "LEAK", "P2"):
        spool = ingest.spool()
        spool.write(make_instance(PatientID=patient, PatientName="Secret^Name"))
        await session.add(spool.finish())
    result = await session.finish()

    good, leaked, other = result.outcomes
    assert (good.stored, other.stored) == (True, True)
    assert leaked.stored is False
    assert leaked.failure is Status.CANNOT_UNDERSTAND  # not 0xA700 "out of resources"
    async with services.db.read() as conn:
        count = (await conn.execute(select(func.count()).select_from(Instance))).scalar_one()
    assert count == 2
    assert len([key async for key in services.store.list("dicom/")]) == 2  # its blob went
    # the failed statement is logged without its values (patient data)
    assert caplog.records, "the refusal is logged"
    assert "Secret" not in caplog.text
    assert "LEAK" not in caplog.text


async def test_a_failed_index_write_logs_no_values(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """An index error's message names the statement, never its values (patient data)."""
    caplog.set_level(logging.INFO)
    with pytest.raises(DBAPIError) as failed:
        async with services.db.write() as conn:
            await conn.execute(text("INSERT INTO no_such_table VALUES (:n)"), {"n": "Secret^Name"})
    assert "Secret" not in str(failed.value)

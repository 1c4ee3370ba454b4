"""Group commit (DIMSE-05): concurrent single-instance stores share index transactions, and each
caller gets its own outcome; nothing is answered before its commit."""

import asyncio
import io

import pydicom
from sqlalchemy import func, select, text

from app.dicom.filemeta import part10_header
from app.dicom.status import Status
from app.index.models import Instance
from app.services.audit import AuditRecord, Outcome
from app.services.container import Services
from app.services.group_commit import Announced, GroupCommit
from app.services.spool import SpooledPart
from tests.factories import make_dataset, make_instance, without_file_meta


def _spooled(services: Services, data: bytes) -> SpooledPart:
    spool = services.ingest.spool()
    spool.write(data)
    return spool.finish()


def _as_c_store(services: Services, data: bytes, announced: Announced) -> SpooledPart:
    """What the DIMSE front end spools: a File Meta written from the command, then the data set
    exactly as it came."""
    syntax = str(pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID)
    return _spooled(services, part10_header(*announced, syntax) + without_file_meta(data))


async def test_concurrent_stores_share_transactions_and_each_gets_its_own_outcome(
    services: Services, database_url: str
) -> None:
    commits = GroupCommit(services.ingest, max_batch=64)
    study = pydicom.uid.generate_uid()
    first = make_dataset(StudyInstanceUID=study, PatientID="P1")
    stored_before = make_instance(
        StudyInstanceUID=study, PatientID="P1", SOPInstanceUID=first.SOPInstanceUID
    )
    assert (await commits.store(_spooled(services, stored_before))).stored

    good = [make_instance(StudyInstanceUID=study, PatientID="P1") for _ in range(16)]
    resent = stored_before
    different = make_instance(
        StudyInstanceUID=study, PatientID="P1", SOPInstanceUID=first.SOPInstanceUID, Rows=4
    )
    wrong_uid = make_instance(StudyInstanceUID=study, PatientID="P1")
    other_patient = make_instance(StudyInstanceUID=study, PatientID="P2")
    before = commits.stats.batches

    calls = [commits.store(_spooled(services, data)) for data in good]
    calls.append(commits.store(_spooled(services, resent)))
    calls.append(commits.store(_spooled(services, different)))
    # a C-STORE whose Affected SOP Instance UID is not the data set's
    announced = Announced("1.2.840.10008.5.1.4.1.1.2", pydicom.uid.generate_uid())
    calls.append(commits.store(_as_c_store(services, wrong_uid, announced), announced=announced))
    calls.append(commits.store(_spooled(services, b"not DICOM at all" * 20)))
    calls.append(commits.store(_spooled(services, other_patient)))
    outcomes = await asyncio.gather(*calls)

    *good_outcomes, resent_o, different_o, wrong_o, garbage_o, conflict_o = outcomes
    assert all(o.stored and o.failure is None for o in good_outcomes)
    assert resent_o.stored  # an identical re-send succeeds (STOW-09 reject policy)
    assert different_o.failure is Status.DUPLICATE_SOP_INSTANCE
    assert wrong_o.failure is Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    assert garbage_o.failure is Status.CANNOT_UNDERSTAND
    assert conflict_o.failure is Status.PROCESSING_FAILURE  # STOW-10: another PatientID

    transactions = commits.stats.batches - before
    committed = sum(1 for o in outcomes if o.failure is None or o is different_o)
    assert 1 <= transactions < committed, commits.stats
    async with services.db.read() as conn:
        count = (await conn.execute(select(func.count()).select_from(Instance))).scalar_one()
        assert count == 17
        if "postgresql" in database_url:
            # the rows of the 16 concurrent stores were inserted by fewer transactions
            xids = (
                await conn.execute(
                    text("SELECT count(DISTINCT xmin::text) FROM instance WHERE sop_uid <> :s"),
                    {"s": first.SOPInstanceUID},
                )
            ).scalar_one()
            assert xids < 16


async def test_each_caller_s_audit_row_commits_with_its_instance(services: Services) -> None:
    commits = GroupCommit(services.ingest)
    writes = [services.audit.for_write(actor=f"dimse:AE{i}", source="10.0.0.1") for i in range(4)]
    datas = [make_instance(PatientID=f"P{i}") for i in range(4)]
    outcomes = await asyncio.gather(
        *(
            commits.store(_spooled(services, data), audit=write)
            for data, write in zip(datas, writes, strict=True)
        )
    )
    assert all(o.stored for o in outcomes)
    for i, (outcome, write) in enumerate(zip(outcomes, writes, strict=True)):
        assert len(write.journaled) == 1, "one journal row per caller, in its transaction"
        assert outcome.patient_id == f"P{i}"
        await services.audit.record(
            AuditRecord(
                action="store",
                outcome=Outcome.SUCCESS,
                actor=f"dimse:AE{i}",
                instance_uid=outcome.sop_uid,
                supersedes=write.release(),
            )
        )
    await services.audit.flush()
    assert (await services.audit.verify()).ok

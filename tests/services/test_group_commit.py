"""Group commit (DIMSE-05): concurrent single-instance stores share index transactions, and each
caller gets its own outcome; nothing is answered before its commit."""

import asyncio
import hashlib
import io
import threading
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy import func, select, text

from app.dicom.filemeta import part10_header
from app.dicom.instance import ParsedInstance
from app.dicom.status import Status
from app.index.models import Instance
from app.services.audit import AuditRecord, Outcome
from app.services.container import Services
from app.services.group_commit import Announced, GroupCommit
from app.services.ingest import InstanceOutcome, Prepared
from app.services.spool import SpooledPart
from app.storage.base import StorageError
from tests.factories import make_dataset, make_instance, to_bytes, without_file_meta


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


def _stored_rows(sop_uids: list[str]) -> Any:
    return select(Instance.sop_uid, Instance.blob_key).where(Instance.sop_uid.in_(sop_uids))


async def test_parts_prepared_in_threads_of_their_own_share_a_transaction_and_are_durable(
    services: Services,
) -> None:
    """What a DIMSE association does: parse in its own thread (``prepare``), then ``submit``
    on the loop; every instance acknowledged has its row and its blob."""
    commits = GroupCommit(services.ingest, gather_seconds=5.0)
    datas = [make_instance(PatientID="P1") for _ in range(6)]
    prepared = await asyncio.gather(
        *(asyncio.to_thread(commits.prepare, _spooled(services, data)) for data in datas)
    )
    outcomes = await asyncio.gather(*(commits.submit(p) for p in prepared))
    assert all(o.stored for o in outcomes)
    assert commits.stats.batches < len(datas)
    async with services.db.read() as conn:
        rows = (await conn.execute(_stored_rows([o.sop_uid or "" for o in outcomes]))).all()
    assert len(rows) == len(datas)
    for _, key in rows:
        info = await services.store.stat(key)
        assert info is not None
        assert info.size > 0


async def test_a_batch_waits_for_the_parts_being_parsed_but_not_for_long(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    parse = services.ingest.parse_blocking
    slow = make_instance(PatientID="SLOW")

    def parse_blocking(part: SpooledPart) -> ParsedInstance:
        with part.open() as fp:
            is_slow = fp.read() == slow
        if is_slow:
            entered.set()
            release.wait(10)
        return parse(part)

    monkeypatch.setattr(services.ingest, "parse_blocking", parse_blocking)

    async def start_slow(commits: GroupCommit) -> "asyncio.Task[Prepared | InstanceOutcome]":
        entered.clear()
        release.clear()
        call = asyncio.create_task(asyncio.to_thread(commits.prepare, _spooled(services, slow)))
        assert await asyncio.to_thread(entered.wait, 10)  # the slow part is being parsed
        return call

    # the wait ends when the part being parsed is ready: one transaction for both
    commits = GroupCommit(services.ingest, gather_seconds=10.0)
    slow_call = await start_slow(commits)
    fast = await asyncio.to_thread(commits.prepare, _spooled(services, make_instance()))
    fast_call = asyncio.create_task(commits.submit(fast))
    await asyncio.sleep(0.2)
    assert not fast_call.done()
    assert commits.stats.batches == 0
    release.set()
    outcomes = [await commits.submit(await slow_call), await fast_call]
    assert all(o.stored for o in outcomes)
    assert (commits.stats.batches, commits.stats.largest) == (1, 2)

    # a part that takes longer than gather_seconds is not waited for
    commits = GroupCommit(services.ingest, gather_seconds=0.05)
    slow = make_instance(PatientID="SLOW")
    slow_call = await start_slow(commits)
    fast = await asyncio.to_thread(commits.prepare, _spooled(services, make_instance()))
    assert (await asyncio.wait_for(commits.submit(fast), 5)).stored
    assert not slow_call.done()
    release.set()
    assert (await commits.submit(await slow_call)).stored
    assert commits.stats.batches == 2


async def test_a_failed_blob_write_fails_only_its_instance(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object store refuses one blob (its fsync fails): that instance is refused (0xA700)
    and left out of the index; those of its batch are stored and durable."""
    datas = [make_dataset(PatientID="P1") for _ in range(4)]
    failing = hashlib.sha256(datas[2].SOPInstanceUID.encode("ascii")).hexdigest()[:24]
    put_file = services.store.put_file

    async def refusing(key: str, source: Path, *, move: bool = False) -> None:
        if failing in key:
            raise StorageError("fsync: Input/output error")
        await put_file(key, source, move=move)

    monkeypatch.setattr(services.store, "put_file", refusing)
    monkeypatch.setattr(services.store, "put_bytes", _unexpected)
    commits = GroupCommit(services.ingest, gather_seconds=5.0)
    prepared = await asyncio.gather(
        *(asyncio.to_thread(commits.prepare, _spooled(services, to_bytes(data))) for data in datas)
    )
    outcomes = await asyncio.gather(*(commits.submit(p) for p in prepared))
    # the first went alone, the other three (the refused one among them) together
    assert (commits.stats.batches, commits.stats.largest) == (2, 3)
    assert [o.stored for o in outcomes] == [True, True, False, True]
    assert outcomes[2].failure is Status.OUT_OF_RESOURCES
    async with services.db.read() as conn:
        rows = dict((await conn.execute(_stored_rows([d.SOPInstanceUID for d in datas]))).all())
    assert sorted(rows) == sorted(d.SOPInstanceUID for i, d in enumerate(datas) if i != 2)
    for key in rows.values():
        info = await services.store.stat(key)
        assert info is not None
        assert info.size > 0


async def _unexpected(key: str, data: bytes) -> None:
    raise AssertionError(f"{key}: {len(data)} bytes in memory, but the parts are spooled to files")

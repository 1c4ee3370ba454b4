"""Storage Commitment's verification (DIMSE-06): an instance is committed only when the index
holds it under the SOP class named and its blob still hashes to what was acknowledged."""

import pydicom
from pydicom.uid import generate_uid

from app.config import Settings
from app.services.commitment import FailureReason, Reference
from app.services.container import Services
from tests.factories import make_instance

CT = "1.2.840.10008.5.1.4.1.1.2"


async def _store(services: Services, data: bytes) -> str:
    spool = services.ingest.spool()
    spool.write(data)
    outcome = await services.group_commit.store(spool.finish())
    assert outcome.stored
    assert outcome.sop_uid is not None
    return outcome.sop_uid


async def test_verdicts_per_reference(services: Services, settings: Settings) -> None:
    held = await _store(services, make_instance(PatientID="P7"))
    corrupt = await _store(services, make_instance(PatientID="P7"))
    # the blob of one instance is altered behind the index's back
    blobs = sorted((settings.data_dir / "blobs" / "dicom").rglob("*.dcm"))
    target = next(
        p
        for p in blobs
        if str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) == corrupt
    )
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    unknown = generate_uid()
    references = [
        Reference(CT, held),
        Reference(CT, unknown),
        Reference("1.2.840.10008.5.1.4.1.1.4", held),  # held, but as CT, not MR
        Reference(CT, corrupt),
        Reference(CT, "../../etc/passwd"),
    ]
    verdict = await services.commitment.verify(references)
    assert verdict.committed == [Reference(CT, held)]
    assert verdict.failed == [
        (Reference(CT, unknown), FailureReason.NO_SUCH_OBJECT_INSTANCE),
        (references[2], FailureReason.CLASS_INSTANCE_CONFLICT),
        (Reference(CT, corrupt), FailureReason.PROCESSING_FAILURE),
        (references[4], FailureReason.NO_SUCH_OBJECT_INSTANCE),
    ]
    assert verdict.patient_ids == {"P7"}
    assert len(verdict.study_uids) == 1

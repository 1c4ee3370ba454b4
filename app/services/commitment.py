"""Storage Commitment (PS3.4 Annex J, DIMSE-06): does Lightbox hold these instances, safely?

A modality asks before it deletes its own copies, so the answer must be true, not optimistic:
each referenced instance is looked up in the index (present, under the SOP class named), and its
blob is read back and hashed against the SHA-256 recorded when it was stored (the object store
still holds the very bytes that were acknowledged). Anything else is a failure with the reason
PS3.3 C.14.1.1 defines for the Failed SOP Sequence.
"""

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from app.dicom.uids import is_valid_uid
from app.index.db import Database, DriverError
from app.index.holdings import Held, held
from app.storage.base import ObjectNotFound, ObjectStore, StorageError

__all__ = ["CommitmentService", "FailureReason", "Reference", "Verdict"]

log = logging.getLogger(__name__)


class FailureReason(IntEnum):
    """Failure Reason (0008,1197) of a Failed SOP Sequence item (PS3.3 C.14.1.1)."""

    PROCESSING_FAILURE = 0x0110  # held, but its stored bytes are not what was acknowledged
    NO_SUCH_OBJECT_INSTANCE = 0x0112  # not held
    RESOURCE_LIMITATION = 0x0213  # the index or the object store cannot answer now
    CLASS_INSTANCE_CONFLICT = 0x0119  # held under another SOP class


@dataclass(frozen=True, slots=True)
class Reference:
    """One item of a Referenced SOP Sequence."""

    sop_class_uid: str
    sop_uid: str


@dataclass(slots=True)
class Verdict:
    """The answer for one commitment request, in the order of its references."""

    committed: list[Reference] = field(default_factory=list)
    failed: list[tuple[Reference, FailureReason]] = field(default_factory=list)
    #: the studies and patients the committed instances belong to (the audit's)
    study_uids: set[str] = field(default_factory=set)
    patient_ids: set[str] = field(default_factory=set)


class CommitmentService:
    """Verifies instances against the index and the blobs' hashes."""

    def __init__(self, db: Database, store: ObjectStore, *, concurrency: int = 4) -> None:
        self._db = db
        self._store = store
        self._slots = asyncio.Semaphore(max(1, concurrency))

    async def verify(self, references: Sequence[Reference]) -> Verdict:
        """Which of ``references`` Lightbox holds, byte for byte as acknowledged."""
        verdict = Verdict()
        valid = [r for r in references if is_valid_uid(r.sop_uid)]
        try:
            async with self._db.read() as conn:
                found = await held(conn, (r.sop_uid for r in valid))
        except (DriverError, OSError) as exc:
            log.error("index unavailable for a storage commitment: %s", exc)
            verdict.failed = [(r, FailureReason.RESOURCE_LIMITATION) for r in references]
            return verdict
        checks = await asyncio.gather(*(self._check(r, found.get(r.sop_uid)) for r in references))
        for reference, reason in zip(references, checks, strict=True):
            if reason is None:
                verdict.committed.append(reference)
                instance = found[reference.sop_uid]
                verdict.study_uids.add(instance.study_uid)
                if instance.patient_id:
                    verdict.patient_ids.add(instance.patient_id)
            else:
                verdict.failed.append((reference, reason))
        return verdict

    async def _check(self, reference: Reference, instance: Held | None) -> FailureReason | None:
        if instance is None:
            return FailureReason.NO_SUCH_OBJECT_INSTANCE
        if instance.sop_class_uid != reference.sop_class_uid:
            return FailureReason.CLASS_INSTANCE_CONFLICT
        async with self._slots:
            digest = hashlib.sha256()
            size = 0
            try:
                async for chunk in self._store.open(instance.blob_key):
                    digest.update(chunk)
                    size += len(chunk)
            except ObjectNotFound:
                log.error("storage commitment: the blob of an indexed instance is missing")
                return FailureReason.PROCESSING_FAILURE
            except (StorageError, OSError) as exc:
                log.error("object store unavailable for a storage commitment: %s", exc)
                return FailureReason.RESOURCE_LIMITATION
        if size != instance.size or digest.hexdigest() != instance.sha256:
            log.error("storage commitment: a blob no longer matches its recorded hash")
            return FailureReason.PROCESSING_FAILURE
        return None

"""``lightbox export``: studies and series written as a PS3.10 file-set, a ZIP file or a directory
(the archive use case of :mod:`app.services.retrieve.archive`, the same as WADO-RS
``Accept: application/zip``), audited as a retrieve by the operating-system user.

Nothing is written unless every target is held: an unknown study is :class:`NotFound`, a deleted
one :class:`Gone` while its tombstone lives, as WADO-RS answers 404 and 410. A ZIP file is
written as ``NAME.partial`` and renamed when complete; a directory gets its DICOMDIR last.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from app.dicom.target import Target
from app.errors import LightboxError
from app.services.audit import AuditLog, AuditRecord, Outcome
from app.services.retrieve import MediaPlan, RetrieveService
from app.services.retrieve.archive import check_directory

__all__ = ["ExportResult", "ExportService"]


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote."""

    path: Path
    instances: int
    bytes: int
    as_zip: bool


class ExportService:
    """Exports to the local filesystem (module docstring)."""

    def __init__(self, retrieve: RetrieveService, audit: AuditLog) -> None:
        self._retrieve = retrieve
        self._audit = audit

    async def export(self, targets: Sequence[Target], out: Path, *, actor: str) -> ExportResult:
        """Write ``targets`` to ``out``: a ZIP file when its name ends in ``.zip``, else a
        directory (which must not exist or be empty)."""
        archives = self._retrieve.archives
        as_zip = out.suffix.lower() == ".zip"
        detail = f"export as {'a ZIP file' if as_zip else 'a directory'}"
        if not as_zip:  # before anything is read: a mistyped --out is no retrieve
            await anyio.to_thread.run_sync(check_directory, out)
        try:
            plan = await archives.plan(targets)
        except LightboxError as exc:
            for target in targets:
                await self._record(target, actor, Outcome.FAILURE, exc.http_status, exc.message)
            raise
        try:
            if as_zip:
                written = await archives.write_zip(plan, out)
            else:
                written = await archives.write_directory(plan, out)
        except BaseException as exc:
            for target in targets:
                await self._record(
                    target, actor, Outcome.FAILURE, 500, f"{detail}: {type(exc).__name__}"
                )
            raise
        for target in targets:
            await self._record(
                target,
                actor,
                Outcome.SUCCESS,
                200,
                detail,
                count=_count(plan, target),
                patient_id=plan.patients.get(target.study_uid),
            )
        return ExportResult(out, len(plan.files), written, as_zip)

    async def _record(
        self,
        target: Target,
        actor: str,
        outcome: str,
        status: int,
        detail: str,
        *,
        count: int | None = None,
        patient_id: str | None = None,
    ) -> None:
        await self._audit.record(
            AuditRecord(
                action="retrieve",
                outcome=outcome,
                status=status,
                actor=actor,
                source="cli",
                study_uid=target.study_uid,
                series_uid=target.series_uid,
                patient_id=patient_id,
                count=count,
                detail=detail,
            )
        )


def _count(plan: MediaPlan, target: Target) -> int:
    """The instances of ``plan`` that ``target`` names."""
    return sum(
        1
        for f in plan.files
        if f.ref.study_uid == target.study_uid
        and (target.series_uid is None or f.ref.series_uid == target.series_uid)
    )

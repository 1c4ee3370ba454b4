"""DELETE of studies, series and instances (RES-10, DEL-01..04), the URLs dicomweb-client's
``delete_study`` / ``delete_series`` / ``delete_instance`` call.

PS3.18 defines no delete transaction; this is the extension Azure and Google offer too. Answers:
204 deleted; 400 malformed UID (GEN-02); 404 unknown or already deleted; 405 with ``Allow`` when
``LIGHTBOX_ALLOW_DELETE=false`` (dicomweb-client reports that as "deletion not supported").
After a delete, retrieving the resource answers 410 while its tombstone lives (DEL-04).
"""

import logging
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.deps import ServicesDep, SettingsDep
from app.api.errors import problem
from app.api.methods import allowed_methods
from app.api.security import note, write_audit
from app.dicom.target import Target

log = logging.getLogger(__name__)
router = APIRouter(tags=["delete"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "deleted (index rows, counts, then the stored files)"},
    400: {"description": "malformed UID in the path (GEN-02)"},
    404: {"description": "no such resource, or already deleted"},
    405: {"description": "deletion is disabled by configuration (LIGHTBOX_ALLOW_DELETE)"},
}


@router.delete(
    "/studies/{study}",
    operation_id="delete-delete_study",
    summary="Delete a study (extension, DEL-01)",
    status_code=204,
    responses=_RESPONSES,
    response_class=Response,
)
async def delete_study(
    study: str, request: Request, services: ServicesDep, settings: SettingsDep
) -> Response:
    return await _delete(request, services, settings, study)


@router.delete(
    "/studies/{study}/series/{series}",
    operation_id="delete-delete_series",
    summary="Delete a series (extension, DEL-01)",
    status_code=204,
    responses=_RESPONSES,
    response_class=Response,
)
async def delete_series(
    study: str, series: str, request: Request, services: ServicesDep, settings: SettingsDep
) -> Response:
    return await _delete(request, services, settings, study, series)


@router.delete(
    "/studies/{study}/series/{series}/instances/{instance}",
    operation_id="delete-delete_instance",
    summary="Delete an instance (extension, DEL-01)",
    status_code=204,
    responses=_RESPONSES,
    response_class=Response,
)
async def delete_instance(
    study: str,
    series: str,
    instance: str,
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
) -> Response:
    return await _delete(request, services, settings, study, series, instance)


async def _delete(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    study: str,
    series: str | None = None,
    instance: str | None = None,
) -> Response:
    if not settings.allow_delete:
        allow = ", ".join(
            m for m in allowed_methods(request.app, request.url.path) if m != "DELETE"
        )
        return problem(405, "deletion is disabled on this server", {"Allow": allow})
    target = Target.from_path(study, series, instance)
    # the audit row names the patient (DEL-03): read it before the study row may be gone, and
    # let events already queued about this study resolve their PatientID while it still exists
    patient_id = await services.access.patient_id(target.study_uid)
    await services.audit.flush()
    outcome = await services.delete.delete(target, audit=write_audit(request, services.audit))
    note(request, patient_id=patient_id, count=outcome.instances)
    log.info(
        "deleted %d instance(s), %d series%s; %d blob(s) removed, %d left for gc",
        outcome.instances,
        outcome.series_removed,
        ", and the study" if outcome.study_removed else "",
        outcome.blobs_removed,
        outcome.blobs_left,
    )
    return Response(status_code=204)

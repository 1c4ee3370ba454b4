"""DELETE of studies, series and instances (RES-10, DEL-01..04), the URLs dicomweb-client's
``delete_study`` / ``delete_series`` / ``delete_instance`` call.

PS3.18 defines no delete transaction; this is the extension Azure and Google offer too. Answers:
204 deleted; 400 malformed UID (GEN-02); 404 unknown or already deleted; 405 with ``Allow`` when
``LIGHTBOX_ALLOW_DELETE=false`` (dicomweb-client reports that as "deletion not supported").
After a delete, retrieving the resource answers 410 while its tombstone lives (DEL-04).
"""

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.responses import Response

from app.api.deps import ServicesDep, SettingsDep
from app.api.methods import allowed_methods
from app.api.security import note, write_audit
from app.api.targets import LevelRoute, add_level_routes
from app.dicom.target import Level, Target

log = logging.getLogger(__name__)
router = APIRouter(tags=["delete"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "deleted (index rows, counts, then the stored files)"},
    400: {"description": "malformed UID in the path (GEN-02)"},
    404: {"description": "no such resource, or already deleted"},
    405: {"description": "deletion is disabled by configuration (LIGHTBOX_ALLOW_DELETE)"},
}


async def deletion_allowed(request: Request, settings: SettingsDep) -> None:
    """405 with ``Allow`` when deletion is switched off (DEL-02), before the UIDs are read."""
    if not settings.allow_delete:
        allow = ", ".join(
            m for m in allowed_methods(request.app, request.url.path) if m != "DELETE"
        )
        raise HTTPException(405, "deletion is disabled on this server", {"Allow": allow})


def _delete_endpoint(target_dependency: Any) -> Callable[..., Any]:
    async def delete(
        request: Request, services: ServicesDep, target: Target = target_dependency
    ) -> Response:
        # the audit row names the patient (DEL-03): read it before the study row may be gone,
        # and let events already queued about this study resolve their PatientID meanwhile
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

    return delete


add_level_routes(
    router,
    "",
    [
        LevelRoute(Level.STUDY, "delete-delete_study", "Delete a study (extension, DEL-01)"),
        LevelRoute(Level.SERIES, "delete-delete_series", "Delete a series (extension, DEL-01)"),
        LevelRoute(
            Level.INSTANCE, "delete-delete_instance", "Delete an instance (extension, DEL-01)"
        ),
    ],
    _delete_endpoint,
    method="DELETE",
    responses=_RESPONSES,
    status_code=204,
    dependencies=[Depends(deletion_allowed)],
)

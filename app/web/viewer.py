"""The built-in viewer (``/studies/{study}/view``, issue 22 point 3): a series viewer in the
page's own script (``static/viewer.js``), on the DICOMweb root's series metadata and frames.

The page carries what the script needs as a JSON script tag (``type="application/json"``, read
with ``JSON.parse``, never executed): the DICOMweb root, the study, its image series and which
to open. Everything else comes from the DICOMweb root with the session cookie (or, for a shared
study, the share's cookie): the series metadata (``/metadata``) and each frame decoded to
Explicit VR Little Endian (``/frames/{n}``, windowed in the browser), or rendered
(``/frames/{n}/rendered``) for colour and other images the script does not window itself.
Patient and study values are shown with ``textContent`` only.
"""

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from app.api.deps import RestrictionDep, ServicesDep, SettingsDep
from app.api.security import page
from app.auth.principal import Permission
from app.dicom.uids import is_valid_uid
from app.services.studies import StudyOverview
from app.web.study import dicomweb_path, viewed_overview
from app.web.templating import render

router = APIRouter(include_in_schema=False)


def viewer_data(overview: StudyOverview, dicomweb: str, series: str | None) -> dict[str, Any]:
    """What ``viewer.js`` reads from the page (the JSON script tag)."""
    images = overview.images
    initial = series if series and any(s.series_uid == series for s in images) else None
    if initial is None and images:
        initial = images[0].series_uid
    study = overview.study
    return {
        "dicomweb": dicomweb,
        "study": study.study_uid,
        "initial": initial,
        "patient": {
            "name": study.patient_name,
            "id": study.patient_id,
            "birthDate": study.birth_date,
            "sex": study.sex,
        },
        "studyInfo": {
            "description": study.description,
            "date": study.study_date,
            "time": study.study_time,
            "accession": study.accession,
        },
        "series": [
            {
                "uid": s.series_uid,
                "number": s.number,
                "modality": s.modality,
                "description": s.description,
                "instances": s.instances,
            }
            for s in images
        ],
    }


def viewer_page(
    request: Request, overview: StudyOverview, dicomweb: str, series: str | None, *, shared: bool
) -> Response:
    """The viewer page of a study (for a signed-in user, or a share link's visitor)."""
    data = viewer_data(overview, dicomweb, series)
    return render(
        request,
        "viewer.html",
        {"overview": overview, "study": overview.study, "data": data, "shared": shared},
    )


@router.get(
    "/studies/{study}/view",
    response_class=HTMLResponse,
    openapi_extra=page(Permission.READ, audited=True),
)
async def view_study(
    request: Request,
    study: str,
    services: ServicesDep,
    settings: SettingsDep,
    restrict: RestrictionDep,
    series: str | None = None,
) -> Response:
    overview = await viewed_overview(request, study, services, settings, restrict)
    chosen = series if series and is_valid_uid(series) else None
    return viewer_page(request, overview, dicomweb_path(request, settings), chosen, shared=False)

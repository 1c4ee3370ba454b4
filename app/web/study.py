"""A study's page (``/studies/{study}``, issue 22 point 2): patient and study details, the series
with thumbnails and instance counts, the reports (structured reports as text, PDFs inline), and
what the user may do with the study: open it in a viewer, download it, share it, delete it.

Controls the user may not use are not shown, and their routes refuse them anyway (403, from
the guard: each route declares its permission). Deleting asks for confirmation on a page of its
own (works without JavaScript) and goes through the delete service, as ``DELETE`` of the
DICOMweb root does (same audit: the patient named, the instances counted).

Images and documents are the DICOMweb root's own resources (thumbnails, ``/rendered``), fetched
by the browser with the session cookie: the page adds no route on the DICOMweb hot paths.
"""

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import RestrictionDep, ServicesDep, SettingsDep
from app.api.security import note, page, write_audit
from app.api.urls import service_base
from app.auth.principal import Permission
from app.config import Settings
from app.dicom.query import StudyRestriction
from app.dicom.target import Target
from app.errors import MethodNotAllowed
from app.services.container import Services
from app.services.studies import StudyOverview
from app.web.ohif import ohif_installed
from app.web.templating import render

router = APIRouter(include_in_schema=False)


def dicomweb_path(request: Request, settings: Settings) -> str:
    """The DICOMweb root as a path of this site (same origin: the session cookie goes along)."""
    root_path: str = request.scope.get("root_path", "")
    return root_path.rstrip("/") + settings.dicomweb_root


async def viewed_overview(
    request: Request,
    study: str,
    services: Services,
    settings: Settings,
    restrict: StudyRestriction | None,
) -> StudyOverview:
    """The study's overview (404 or 410 when absent or not the caller's), noted as viewed for
    the request's audit row, which names the patient: the study page, its delete confirmation,
    the viewer and a share's viewer."""
    overview = await services.studies.overview(
        study, service_base(request, settings), restrict=restrict
    )
    note(request, action="view", patient_id=overview.study.patient_id or None)
    return overview


@router.get(
    "/studies/{study}",
    response_class=HTMLResponse,
    openapi_extra=page(Permission.READ, audited=True),
)
async def study_page(
    request: Request,
    study: str,
    services: ServicesDep,
    settings: SettingsDep,
    restrict: RestrictionDep,
) -> Response:
    overview = await viewed_overview(request, study, services, settings, restrict)
    return render(
        request,
        "studies/study.html",
        {
            "overview": overview,
            "study": overview.study,
            "dicomweb": dicomweb_path(request, settings),
            "ohif": ohif_installed(settings),
            "allow_delete": settings.allow_delete,
        },
    )


@router.get(
    "/studies/{study}/reports/{series}/{instance}",
    response_class=HTMLResponse,
    openapi_extra=page(Permission.READ, audited=True),
)
async def report(
    request: Request, study: str, series: str, instance: str, services: ServicesDep
) -> Response:
    """A structured report's text: a fragment for htmx, else a page of its own."""
    target = Target.from_path(study, series, instance)
    text = await services.studies.report_text(target)
    note(request, action="render")
    context = {"text": text, "study_uid": study}
    if request.headers.get("hx-request") == "true":
        return render(request, "studies/_report.html", context)
    return render(request, "studies/report.html", context)


@router.get(
    "/studies/{study}/delete",
    response_class=HTMLResponse,
    openapi_extra=page(Permission.DELETE, audited=True),
)
async def confirm_delete(
    request: Request,
    study: str,
    services: ServicesDep,
    settings: SettingsDep,
    restrict: RestrictionDep,
) -> Response:
    """What deleting the study would remove, and the button that does it."""
    if not settings.allow_delete:
        raise MethodNotAllowed("deletion is disabled on this server")
    overview = await viewed_overview(request, study, services, settings, restrict)
    return render(request, "studies/delete.html", {"overview": overview, "study": overview.study})


@router.post(
    "/studies/{study}/delete",
    response_class=HTMLResponse,
    openapi_extra=page(Permission.DELETE, audited=True),
)
async def delete_study(
    request: Request, study: str, services: ServicesDep, settings: SettingsDep
) -> Response:
    """Delete the study (the delete service, as ``DELETE {root}/studies/{study}``), then back to
    the list, which says so."""
    if not settings.allow_delete:
        raise MethodNotAllowed("deletion is disabled on this server")
    target = Target.from_path(study)
    # as the DICOMweb route: the audit row names the patient, read before the row is gone
    patient_id = await services.access.patient_id(target.study_uid)
    await services.audit.flush()
    outcome = await services.delete.delete(target, audit=write_audit(request, services.audit))
    note(request, action="delete", patient_id=patient_id, count=outcome.instances)
    return RedirectResponse(f"/?deleted={target.study_uid}", status_code=303)

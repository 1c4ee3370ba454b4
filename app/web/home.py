"""The start page (``/``): the study browser for a user who may read (issue 22, point 2), else
what the user's other permissions lead to (upload, administration).

Searching posts the form (``POST /``) instead of putting it in the URL: what was searched for
(patient names, identifiers) then never reaches an access log, a proxy's log, the browser's
history or a ``Referer``; the audit trail records it, as it records QIDO-RS searches. Without
JavaScript the form posts and the whole page comes back; with htmx only the results are
replaced (``HX-Request``). Sorting and paging are buttons of the same form, so they work alike
either way. ``static/studies.js`` adds keyboard navigation, and keeps the last search of the
tab in ``sessionStorage`` so that coming back to the list shows it again (cleared at sign-out).
"""

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, Response

from app.api.deps import RestrictionDep, ServicesDep, SettingsDep
from app.api.security import note, page
from app.api.urls import service_base
from app.auth.principal import Permission
from app.dicom.query import SORT_KEYS
from app.dicom.uids import is_valid_uid
from app.errors import BadRequest
from app.services.studies import PAGE_SIZES, StudyList, StudySearch
from app.web.templating import page_context, render

router = APIRouter(include_in_schema=False)

#: the list's columns that sort, as the form names them, in the table's order
SORTABLE = {
    "name": "PatientName",
    "id": "PatientID",
    "date": "StudyDate",
    "accession": "AccessionNumber",
    "description": "StudyDescription",
}
_KEY_NAMES = {v: k for k, v in SORTABLE.items()}
assert set(SORTABLE.values()) <= SORT_KEYS


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _date(form: FormData, name: str, label: str) -> date | None:
    value = _text(form, name).strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{label}: a date as YYYY-MM-DD") from None


def _number(form: FormData, name: str, default: int) -> int:
    value = _text(form, name).strip()
    if not value:
        return default
    if not value.isdigit() or len(value) > 6:
        raise BadRequest(f"{name}: a whole number")
    return int(value)


def search_from(form: FormData) -> StudySearch:
    """The search a posted form describes (module docstring: how sorting and paging buttons
    say what they do)."""
    current = SORTABLE.get(_text(form, "current_sort"), "StudyDate")
    descending = _text(form, "current_dir") != "asc"
    clicked = _text(form, "sort")
    if clicked:
        key = SORTABLE.get(clicked)
        if key is None:
            raise BadRequest(f"the list cannot be sorted by {clicked[:32]!r}")
        # the column sorted already: the other way; another: its natural way first
        descending = (not descending) if key == current else key == "StudyDate"
        current = key
    return StudySearch(
        patient_name=_text(form, "patient_name"),
        patient_id=_text(form, "patient_id"),
        accession=_text(form, "accession"),
        description=_text(form, "description"),
        modality=_text(form, "modality"),
        date_from=_date(form, "date_from", "Study date from"),
        date_to=_date(form, "date_to", "Study date to"),
        sort=current,
        descending=descending,
        page=_number(form, "page", 1),
        page_size=_number(form, "page_size", PAGE_SIZES[0]),
    )


def _context(search: StudySearch, found: StudyList | None, error: str | None) -> dict[str, Any]:
    return {
        "deleted": None,
        "search": search,
        "found": found,
        "error": error,
        "page_sizes": PAGE_SIZES,
        "sort_name": _KEY_NAMES.get(search.sort, "date"),
        "columns": SORTABLE,
    }


def _answer(request: Request, context: dict[str, Any], status: int) -> Response:
    context["deleted"] = getattr(request.state, "deleted", None)
    if request.headers.get("hx-request") == "true":
        # htmx swaps the results alone; an error is shown there too (with status 200: htmx
        # does not swap error responses)
        return render(request, "studies/_results.html", context)
    return render(request, "home.html", context, status_code=status)


def _criteria(search: StudySearch) -> str:
    """What a search looked for, for its audit record (PS3.15 A.5.3.10 keeps the query)."""
    fields = {
        "PatientName": search.patient_name.strip(),
        "PatientID": search.patient_id.strip(),
        "AccessionNumber": search.accession.strip(),
        "StudyDescription": search.description.strip(),
        "ModalitiesInStudy": search.modality.strip(),
        "from": search.date_from.isoformat() if search.date_from else "",
        "to": search.date_to.isoformat() if search.date_to else "",
    }
    asked = " ".join(f"{k}={v!r}" for k, v in fields.items() if v)
    order = f"{search.sort} {'desc' if search.descending else 'asc'}"
    return f"study list: {asked or 'all'}; {order}; page {search.page}"[:1024]


async def _list(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    restrict: RestrictionDep,
    search: StudySearch,
) -> Response:
    try:
        found = await services.studies.studies(
            search, service_base(request, settings), restrict=restrict
        )
    except BadRequest as exc:
        note(request, action="search", detail=f"{_criteria(search)}: refused: {exc.message}")
        return _answer(request, _context(search, None, exc.message), 400)
    note(request, action="search", count=found.total, detail=_criteria(search))
    return _answer(request, _context(search, found, None), 200)


@router.get("/", response_class=HTMLResponse, openapi_extra=page(audited=True))
async def home(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    restrict: RestrictionDep,
    deleted: str | None = None,
) -> Response:
    """The newest studies first (the study browser), or the start page of a user who may not
    read (audited: the list shows patients). ``deleted``: the study just deleted (said so)."""
    if not page_context(request).may(Permission.READ):
        note(request, action="page")
        return render(request, "home.html", _context(StudySearch(), None, None))
    request.state.deleted = deleted if deleted and is_valid_uid(deleted) else None
    return await _list(request, services, settings, restrict, StudySearch())


@router.post("/", response_class=HTMLResponse, openapi_extra=page(Permission.READ, audited=True))
async def search_studies(
    request: Request, services: ServicesDep, settings: SettingsDep, restrict: RestrictionDep
) -> Response:
    """A search of the study list (the form's fields; module docstring)."""
    try:
        search = search_from(await request.form())
    except BadRequest as exc:
        note(request, action="search", detail=f"refused: {exc.message}")
        return _answer(request, _context(StudySearch(), None, exc.message), 400)
    return await _list(request, services, settings, restrict, search)

"""``/admin/audit``: the audit trail, filtered and paged (newest first), exported, and its hash
chain verified on demand (it walks every row: a button, not every page view).

The filters may name a patient, so they are posted (``POST /admin/audit``), never in the URL;
paging buttons belong to the same form. The export (``POST /admin/audit/export``) streams the
matching events in chain order, as JSON lines (what ``lightbox audit export`` writes) or CSV.
Viewing and exporting are audited (``audit-query``, ``audit-export``), as ``/api/audit`` is.
"""

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, Response, StreamingResponse

from app.api.deps import ServicesDep
from app.api.security import note, page
from app.auth.principal import Permission
from app.errors import BadRequest
from app.services.audit import AuditFilter
from app.web.templating import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE: Final = 50
MAX_PAGE: Final = 10_000
#: what the filter form offers as actions (any text may be typed)
ACTIONS: Final = (
    "search",
    "retrieve",
    "metadata",
    "frames",
    "render",
    "store",
    "delete",
    "view",
    "share-create",
    "share-open",
    "share-revoke",
    "token-issued",
    "token-revoked",
    "login",
    "login-failure",
    "logout",
    "audit-query",
    "audit-export",
)
EXPORT_COLUMNS: Final = (
    "seq",
    "time",
    "action",
    "outcome",
    "status",
    "actor",
    "client_id",
    "source",
    "patient_id",
    "study_uid",
    "series_uid",
    "instance_uid",
    "count",
    "requests",
    "request_id",
    "detail",
)


def _text(form: FormData, name: str, limit: int = 256) -> str | None:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if len(value) > limit:
        raise BadRequest(f"{name}: at most {limit} characters")
    return value


def _time(form: FormData, name: str) -> datetime | None:
    value = _text(form, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name}: a date and time such as 2026-12-07T10:30") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def filters_from(form: FormData) -> AuditFilter:
    return AuditFilter(
        patient_id=_text(form, "patient", 64),
        study_uid=_text(form, "study", 64),
        actor=_text(form, "actor"),
        action=_text(form, "action", 64),
        since=_time(form, "since"),
        until=_time(form, "until"),
    )


def _page_number(form: FormData) -> int:
    value = _text(form, "page", 6) or "1"
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise BadRequest(f"page: 1 to {MAX_PAGE}")
    return int(value)


def _described(filters: AuditFilter) -> str:
    fields = {k: v for k, v in vars_of(filters).items() if v is not None}
    return "audit trail: " + (" ".join(f"{k}={v!s}" for k, v in fields.items()) or "all")


def vars_of(filters: AuditFilter) -> dict[str, Any]:
    return {
        "patient": filters.patient_id,
        "study": filters.study_uid,
        "actor": filters.actor,
        "action": filters.action,
        "since": filters.since.isoformat() if filters.since else None,
        "until": filters.until.isoformat() if filters.until else None,
    }


async def _show(
    request: Request, services: ServicesDep, filters: AuditFilter, number: int, error: str | None
) -> Response:
    items: list[dict[str, Any]] = []
    total = 0
    if error is None:
        offset = (number - 1) * PAGE_SIZE
        items, total = await services.audit.search(filters, limit=PAGE_SIZE, offset=offset)
    note(request, action="audit-query", count=total, detail=_described(filters)[:1024])
    context = {
        "items": items,
        "total": total,
        "page_number": number,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "filters": vars_of(filters),
        "actions": ACTIONS,
        "error": error,
    }
    if request.headers.get("hx-request") == "true":  # htmx swaps 2xx answers only
        return render(request, "admin/_audit_results.html", context)
    return render(request, "admin/audit.html", context, status_code=400 if error else 200)


@router.get(
    "/admin/audit", response_class=HTMLResponse, openapi_extra=page(Permission.ADMIN, audited=True)
)
async def audit_trail(request: Request, services: ServicesDep) -> Response:
    """The newest events."""
    return await _show(request, services, AuditFilter(), 1, None)


@router.post(
    "/admin/audit", response_class=HTMLResponse, openapi_extra=page(Permission.ADMIN, audited=True)
)
async def filter_audit_trail(request: Request, services: ServicesDep) -> Response:
    """The events matching the posted filters, one page of them."""
    form = await request.form()
    try:
        filters, number = filters_from(form), _page_number(form)
    except BadRequest as exc:
        return await _show(request, services, AuditFilter(), 1, exc.message)
    return await _show(request, services, filters, number, None)


async def _jsonl(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for row in rows:
        yield orjson.dumps(row, option=orjson.OPT_SORT_KEYS) + b"\n"


async def _csv(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    async for row in rows:
        writer.writerow([_cell(row.get(c)) for c in EXPORT_COLUMNS])
        if buffer.tell() > 65536:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _cell(value: Any) -> str:
    """A CSV cell; text that a spreadsheet would run as a formula is quoted as text."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.post("/admin/audit/export", openapi_extra=page(Permission.ADMIN, audited=True))
async def export_audit_trail(request: Request, services: ServicesDep) -> Response:
    """The matching events in chain order, as a download (JSON lines or CSV)."""
    form = await request.form()
    filters = filters_from(form)
    kind = _text(form, "format", 8) or "jsonl"
    if kind not in ("jsonl", "csv"):
        raise BadRequest("format: jsonl or csv")
    note(request, action="audit-export", detail=_described(filters)[:1024])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    rows = services.audit.rows(filters)
    body = _csv(rows) if kind == "csv" else _jsonl(rows)
    media = "text/csv; charset=utf-8" if kind == "csv" else "application/x-ndjson"
    return StreamingResponse(
        body,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="lightbox-audit-{stamp}.{kind}"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/admin/audit/verify",
    response_class=HTMLResponse,
    openapi_extra=page(Permission.ADMIN, audited=True),
)
async def verify_audit_trail(request: Request, services: ServicesDep) -> Response:
    """Walk the hash chain (every row) and say whether it is intact."""
    report = await services.audit.verify()
    outcome = "intact" if report.ok else f"{len(report.problems)} problems"
    note(request, action="audit-verify", count=report.rows, detail=f"chain {outcome}")
    htmx = request.headers.get("hx-request") == "true"
    template = "admin/_audit_verify.html" if htmx else "admin/audit_verify.html"
    return render(request, template, {"report": report})

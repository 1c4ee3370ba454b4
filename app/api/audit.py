"""The audit trail's admin API: ``GET /api/audit`` (GEN-10), filtered and paged, newest first."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from app.api.deps import ServicesDep
from app.api.json_response import JSON
from app.api.paging import LimitParam, OffsetParam, page_response
from app.api.security import requires
from app.auth.principal import Permission
from app.errors import BadRequest
from app.services.audit import AuditFilter

router = APIRouter(tags=["audit"])


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 date-time, got {value!r}") from None
    return parsed


@router.get(
    "/api/audit",
    operation_id="audit-search",
    summary="Search the audit trail (admin)",
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={
        200: {"description": "one page of audit events", "content": {JSON: {}}},
        400: {"description": "malformed filter"},
    },
)
async def search_audit(
    services: ServicesDep,
    patient: Annotated[str | None, Query(description="PatientID")] = None,
    study: Annotated[str | None, Query(description="StudyInstanceUID")] = None,
    actor: Annotated[str | None, Query(description="token subject, client or AE title")] = None,
    action: Annotated[str | None, Query(description="store, search, retrieve, ...")] = None,
    since: Annotated[str | None, Query(description="from this time (ISO 8601)")] = None,
    until: Annotated[str | None, Query(description="before this time (ISO 8601)")] = None,
    limit: LimitParam = 100,
    offset: OffsetParam = 0,
) -> Response:
    filters = AuditFilter(
        patient_id=patient,
        study_uid=study,
        actor=actor,
        action=action,
        since=_time(since, "since"),
        until=_time(until, "until"),
    )
    items, total = await services.audit.search(filters, limit=limit, offset=offset)
    return page_response(items, total=total, offset=offset, limit=limit)

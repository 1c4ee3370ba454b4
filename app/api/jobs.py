"""Jobs over HTTP (admin): ``POST /api/jobs/pull`` starts a migration from a legacy PACS in this
server process; ``GET /api/jobs``, ``GET /api/jobs/{id}`` (progress, failures), ``POST
/api/jobs/{id}/cancel`` and ``POST /api/jobs/{id}/resume`` work on any replica: jobs live in the
index (``app.services.jobs``). Audited by the middleware (``job-start``, ``job-read``,
``job-cancel``, ``job-resume``); the job itself audits its start, each study and its end.

The pull needs the DIMSE client, which this package does not import (``app.api`` and
``app.dimse`` are independent front ends): ``app.main`` composes it into the services
(``open_services(..., pull_sources=...)``), and the route only calls the service.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from app.api.deps import CallerDep, ServicesDep
from app.api.json_response import JSON, json_response
from app.api.paging import LimitParam, OffsetParam, page_response
from app.api.security import note, requires
from app.auth.principal import Permission
from app.services.jobs import Job
from app.services.pull import MAX_CONCURRENCY, PullRequest

router = APIRouter(tags=["jobs"])

#: the failed units a job's document lists (the report of a migration: what to look at)
MAX_FAILURES = 100
JobIdParam = Annotated[str, Path(description="the job's id (32 hexadecimal digits)")]
_JOB = {"description": "the job", "content": {JSON: {}}}
_NOT_FOUND = {"description": "no such job"}
_RUNNING = {"description": "the job runs already (here or on another replica), or has ended"}


class PullBody(BaseModel):
    """A migration from a legacy PACS (the options of ``lightbox pull``)."""

    source: str = Field(description="the AE title to pull from (a registered remote AE)")
    query: dict[str, str] = Field(
        default_factory=dict,
        description='matching keys, keyword or tag -> value: {"StudyDate": "20240101-"}',
    )
    level: str = Field("STUDY", description="the unit of work: STUDY or SERIES")
    method: str = Field("get", description="get (C-GET) or move (C-MOVE to our DIMSE listener)")
    concurrency: int | None = Field(
        None, ge=1, le=MAX_CONCURRENCY, description="units pulled at once (default: settings)"
    )


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def job_json(job: Job) -> dict[str, Any]:
    row = job.row
    return {
        "id": row.id,
        "kind": row.kind,
        "state": job.state.value,
        "reason": row.reason,
        "parameters": row.parameters,
        "owner": row.owner,
        "runner": row.runner,
        "cancel_requested": row.cancel_requested,
        "progress": row.progress.values(),
        "created": _time(row.created_at),
        "updated": _time(row.updated_at),
        "started": _time(row.started_at),
        "finished": _time(row.finished_at),
        "lease_until": _time(row.lease_until),
    }


def _accepted(job: Job) -> Response:
    return json_response(job_json(job), 202, {"Location": f"/api/jobs/{job.id}"})


@router.post(
    "/api/jobs/pull",
    operation_id="jobs-pull",
    summary="Start (or resume) a migration from a legacy PACS (admin)",
    status_code=202,
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={
        202: {"description": "running in the background; Location names the job"},
        400: {"description": "an invalid source, query key, level or method"},
        404: {"description": "the source AE is not known"},
        409: _RUNNING,
    },
)
async def start_pull(
    body: PullBody, request: Request, services: ServicesDep, caller: CallerDep
) -> Response:
    pull = PullRequest.parse(body.source, body.query, body.level, body.method)
    job = await services.pull.prepare(pull, owner=caller.subject)
    job = await services.pull.start(job.id, concurrency=body.concurrency)
    note(request, detail=f"job {job.id}: pull from {pull.source}")
    return _accepted(job)


@router.get(
    "/api/jobs",
    operation_id="jobs-list",
    summary="List the jobs, newest first (admin)",
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={200: {"description": "one page of jobs", "content": {JSON: {}}}},
)
async def list_jobs(
    services: ServicesDep,
    limit: LimitParam = 100,
    offset: OffsetParam = 0,
) -> Response:
    jobs, total = await services.jobs.page(limit=limit, offset=offset)
    return page_response([job_json(j) for j in jobs], total=total, offset=offset, limit=limit)


@router.get(
    "/api/jobs/{job_id}",
    operation_id="jobs-get",
    summary="A job's state, progress and failures (admin)",
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={200: _JOB, 404: _NOT_FOUND},
)
async def get_job(job_id: JobIdParam, services: ServicesDep) -> Response:
    job = await services.jobs.get(job_id)
    failed = await services.jobs.items(job.id, states=["failed"], limit=MAX_FAILURES)
    body = job_json(job)
    body["failures"] = [
        {
            "study_uid": item.study_uid,
            "series_uid": item.series_uid,
            "patient_id": item.patient_id,
            "error": item.error,
        }
        for item in failed
    ]
    return json_response(body)


@router.post(
    "/api/jobs/{job_id}/cancel",
    operation_id="jobs-cancel",
    summary="Cancel a job (admin)",
    status_code=202,
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={202: _JOB, 404: _NOT_FOUND, 409: _RUNNING},
)
async def cancel_job(job_id: JobIdParam, request: Request, services: ServicesDep) -> Response:
    job = await services.jobs.cancel(job_id)
    note(request, detail=f"job {job.id}: cancel")
    return _accepted(job)


@router.post(
    "/api/jobs/{job_id}/resume",
    operation_id="jobs-resume",
    summary="Resume an interrupted, cancelled or failed job here (admin)",
    status_code=202,
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={202: _JOB, 404: _NOT_FOUND, 409: _RUNNING},
)
async def resume_job(job_id: JobIdParam, request: Request, services: ServicesDep) -> Response:
    job = await services.pull.start(job_id)
    note(request, detail=f"job {job.id}: resume")
    return _accepted(job)

"""Health checks: ``/healthz`` (the process is up) and ``/readyz`` (index and storage reachable)."""

import logging

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from app.api.deps import ServicesDep
from app.api.security import ANONYMOUS_ROUTE, requires

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get(
    "/healthz",
    operation_id="health-live",
    summary="The process is up",
    openapi_extra=requires(ANONYMOUS_ROUTE),
)
async def healthz() -> Response:
    return Response(orjson.dumps({"status": "ok"}), media_type="application/json")


@router.get(
    "/readyz",
    operation_id="health-ready",
    summary="The index and the object store answer",
    responses={503: {"description": "a back end is unreachable"}},
    openapi_extra=requires(ANONYMOUS_ROUTE),
)
async def readyz(services: ServicesDep) -> Response:
    checks: dict[str, str] = {}
    for name, check in (("index", services.db.check), ("storage", services.store.check)):
        try:
            await check()
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the reason goes to the log
            log.warning("readiness check %s failed: %s", name, exc)
            checks[name] = "unavailable"
    ok = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    return Response(
        orjson.dumps(body), status_code=200 if ok else 503, media_type="application/json"
    )

"""The token registry's admin API: ``GET /api/tokens`` (list), ``GET /api/tokens/{jti}``,
``DELETE /api/tokens/{jti}`` (revoke). Admin permission; audited (``token-revoked``)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.api.deps import CallerDep, ServicesDep
from app.api.json_response import JSON, json_response
from app.api.paging import LimitParam, OffsetParam, page_response
from app.api.security import note, requires, write_audit
from app.auth.principal import Permission
from app.services.tokens import TokenKind, TokenSearch, TokenState, record_json

router = APIRouter(tags=["tokens"])

_JSON: dict[str, object] = {"content": {JSON: {}}}


@router.get(
    "/api/tokens",
    operation_id="tokens-list",
    summary="List the tokens issued by the embedded issuer (admin)",
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={200: {"description": "one page of token records, newest first", **_JSON}},
)
async def list_tokens(
    services: ServicesDep,
    subject: Annotated[str | None, Query(max_length=256, description="token subject")] = None,
    kind: Annotated[TokenKind | None, Query(description="who asked for it")] = None,
    state: Annotated[
        TokenState | None, Query(description="active, revoked or expired (default: all)")
    ] = None,
    limit: LimitParam = 100,
    offset: OffsetParam = 0,
) -> Response:
    filters = TokenSearch(subject=subject, kind=kind.value if kind else None, state=state)
    records, total = await services.tokens.list(filters, limit=limit, offset=offset)
    return page_response([record_json(r) for r in records], total=total, offset=offset, limit=limit)


@router.get(
    "/api/tokens/{jti}",
    operation_id="tokens-get",
    summary="One issued token's record (admin)",
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={
        200: {"description": "the token's record", **_JSON},
        404: {"description": "unknown"},
    },
)
async def get_token(services: ServicesDep, jti: str) -> Response:
    return json_response(record_json(await services.tokens.get(jti)))


@router.delete(
    "/api/tokens/{jti}",
    operation_id="tokens-revoke",
    summary="Revoke a token (admin): every server refuses it within the refresh interval",
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={
        200: {"description": "the token's record, revoked (also when it was already)", **_JSON},
        404: {"description": "no token with this id was issued here"},
    },
)
async def revoke_token(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    jti: str,
    reason: Annotated[str | None, Query(max_length=256, description="why (kept)")] = None,
) -> Response:
    record = await services.tokens.revoke(
        jti, by=caller.subject, reason=reason, audit=write_audit(request, services.audit)
    )
    note(
        request,
        detail=f"jti={record.jti} kind={record.kind} subject={record.subject}"
        + (f" reason={record.revoke_reason}" if record.revoke_reason else ""),
    )
    return json_response(record_json(record))

"""The remote AE registry's admin API: ``/api/aes`` (issue 21, point 6), admin permission.

``GET /api/aes`` lists every known peer (the settings' ones read-only, ``"source": "settings"``);
``POST`` registers one in the index; ``GET``/``PUT``/``DELETE /api/aes/{ae_title}`` read, change
and forget one. Each request is audited by the middleware (actions ``ae-read``, ``ae-add``,
``ae-update``, ``ae-remove``); a change also commits its row with itself. Errors are problem
documents: 400 for an invalid field, 404 for an unknown title, 409 for a title taken or defined
in the settings.
"""

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from app.api.deps import ServicesDep
from app.api.json_response import JSON, json_response
from app.api.security import note, requires, write_audit
from app.auth.principal import Permission
from app.services.aes import RemoteAe

router = APIRouter(tags=["aes"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "an invalid field (AE title, host, port, tls, description)"},
    404: {"description": "no such remote AE"},
    409: {"description": "the title is registered already, or defined in the settings"},
}
TitleParam = Annotated[str, Path(description="the peer's AE title (case-sensitive)")]


class AeFields(BaseModel):
    """A peer's address (the AE title is in the path)."""

    host: str = Field(description="host name or IP address")
    port: int = Field(description="DIMSE port, 1-65535")
    tls: bool = Field(False, description="open associations to it over TLS")
    description: str = Field("", description="free text shown to administrators")


class AeBody(AeFields):
    """A peer to register."""

    ae_title: str = Field(description="the peer's AE title (PS3.5 AE: up to 16 characters)")


def ae_json(entry: RemoteAe) -> dict[str, Any]:
    return {
        "ae_title": entry.ae_title,
        "host": entry.host,
        "port": entry.port,
        "tls": entry.tls,
        "description": entry.description,
        "source": entry.source,
    }


def _location(entry: RemoteAe) -> str:
    return f"/api/aes/{quote(entry.ae_title, safe='')}"


@router.get(
    "/api/aes",
    operation_id="aes-list",
    summary="List the remote AEs (admin)",
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={200: {"description": "every known peer", "content": {JSON: {}}}},
)
async def list_aes(services: ServicesDep) -> Response:
    return json_response({"items": [ae_json(entry) for entry in await services.aes.list()]})


@router.post(
    "/api/aes",
    operation_id="aes-add",
    summary="Register a remote AE (admin)",
    status_code=201,
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={201: {"description": "registered", "content": {JSON: {}}}, **_ERRORS},
)
async def add_ae(body: AeBody, request: Request, services: ServicesDep) -> Response:
    entry = await services.aes.add(
        body.ae_title,
        body.host,
        body.port,
        tls=body.tls,
        description=body.description,
        audit=write_audit(request, services.audit),
    )
    note(request, detail=f"ae-add {entry.ae_title} {entry.address}")
    return json_response(ae_json(entry), 201, {"Location": _location(entry)})


@router.get(
    "/api/aes/{ae_title}",
    operation_id="aes-get",
    summary="Read a remote AE (admin)",
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={200: {"description": "the peer", "content": {JSON: {}}}, 404: _ERRORS[404]},
)
async def get_ae(ae_title: TitleParam, services: ServicesDep) -> Response:
    return json_response(ae_json(await services.aes.require(ae_title)))


@router.put(
    "/api/aes/{ae_title}",
    operation_id="aes-update",
    summary="Change a registered remote AE (admin)",
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={200: {"description": "changed", "content": {JSON: {}}}, **_ERRORS},
)
async def update_ae(
    ae_title: TitleParam, body: AeFields, request: Request, services: ServicesDep
) -> Response:
    entry = await services.aes.update(
        ae_title,
        body.host,
        body.port,
        tls=body.tls,
        description=body.description,
        audit=write_audit(request, services.audit),
    )
    note(request, detail=f"ae-update {entry.ae_title} {entry.address}")
    return json_response(ae_json(entry))


@router.delete(
    "/api/aes/{ae_title}",
    operation_id="aes-remove",
    summary="Forget a registered remote AE (admin)",
    status_code=204,
    openapi_extra=requires(Permission.ADMIN),
    response_class=Response,
    responses={204: {"description": "forgotten"}, 404: _ERRORS[404], 409: _ERRORS[409]},
)
async def remove_ae(ae_title: TitleParam, request: Request, services: ServicesDep) -> Response:
    entry = await services.aes.remove(ae_title, audit=write_audit(request, services.audit))
    note(request, detail=f"ae-remove {entry.ae_title} {entry.address}")
    return Response(status_code=204)

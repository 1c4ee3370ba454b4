"""WADO-RS bulk data (PS3.18 §10.4.1.1.5; BULK-01..04, META-04).

``.../instances/{i}/bulkdata/{tag}[/{item}/{tag}...]``, the BulkDataURIs of ``/metadata``,
returns one value's little-endian bytes (see :mod:`app.dicom.bulk`) as ``multipart/related`` with
one part, or single-part when asked for plainly (NEG-11); an Encapsulated Document is labelled
with its own MIME type (BULK-02); a ``Range`` header gets 206 with that byte range (416 beyond the
value, BULK-04). ``/bulkdata`` on a study, series or instance returns every bulk value, each
part's Content-Location its BulkDataURI (BULK-03).
"""

from collections.abc import AsyncIterator

from fastapi import Depends, Request
from starlette.responses import Response, StreamingResponse

from app.api.deps import ServicesDep, SettingsDep
from app.api.errors import problem
from app.api.multipart_writer import (
    OutgoingPart,
    multipart_content_type,
    new_boundary,
    write_multipart,
)
from app.api.negotiation import bulk_accepted
from app.api.ranges import Unsatisfiable, parse_range
from app.api.targets import LevelRoute, add_level_routes, targets
from app.api.urls import service_base
from app.api.wado.common import (
    BINARY,
    ERRORS,
    AcceptParam,
    accept_header,
    location,
    outgoing_parts,
    retrieve_endpoint,
    router,
)
from app.dicom.target import Level, Target
from app.services.container import Services
from app.services.retrieve import OCTET_STREAM, Accepted, Answer, BulkRequest

_MULTIPART_OCTETS = f'multipart/related; type="{OCTET_STREAM}"'


async def _value_path(path: str) -> str:
    """The ``{path}`` of a BulkDataURI, after the instance's UIDs (checked by the service)."""
    return path


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{path:path}",
    operation_id="wado-retrieve_bulkdata",
    summary="Retrieve a bulk data value by its BulkDataURI (WADO-RS)",
    responses={
        200: {
            "description": "the value's little-endian bytes, in one part or single-part; an "
            "Encapsulated Document is labelled with its MIME type (BULK-01/02)",
            "content": {_MULTIPART_OCTETS: BINARY, OCTET_STREAM: BINARY},
        },
        206: {
            "description": "the byte range a Range header asked for, with Content-Range "
            "(BULK-04; in the one part of a multipart answer)",
            "content": {_MULTIPART_OCTETS: BINARY, OCTET_STREAM: BINARY},
        },
        400: {"description": "malformed UID or bulk data path"},
        404: {"description": "no such instance, or no bulk data value at that path"},
        406: {"description": "no acceptable representation"},
        416: {"description": "the Range lies beyond the value (Content-Range: bytes */size)"},
    },
    response_class=Response,
)
async def retrieve_bulkdata(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    target: Target = targets[Level.INSTANCE],
    path: str = Depends(_value_path),
    accept: AcceptParam = None,
) -> Response:
    accepted = bulk_accepted(accept or [], accept_header(request), strict=settings.strict_accept)
    answer = await services.retrieve.bulk(BulkRequest(target, accepted, path))
    part = await anext(answer.parts)
    data = b"".join([chunk async for chunk in part.chunks])
    where = location(service_base(request, settings), part.head)
    try:
        wanted = parse_range(
            request.headers.get("range"), len(data), if_range=request.headers.get("if-range")
        )
    except Unsatisfiable as exc:
        return problem(416, str(exc), {"Content-Range": f"bytes */{exc.size}"})
    status, content_range = 200, None
    if wanted is not None:
        status, content_range = 206, wanted.content_range
        data = data[wanted.start : wanted.end + 1]
    headers = {"Content-Location": where, "Accept-Ranges": "bytes"}
    if answer.whole:
        if content_range is not None:
            headers["Content-Range"] = content_range
        return Response(data, status_code=status, media_type=answer.media_type, headers=headers)
    boundary = new_boundary()
    outgoing = OutgoingPart(
        content_type=answer.media_type,
        chunks=_once(data),
        content_location=where,
        content_length=len(data),
        content_range=content_range,
    )
    return StreamingResponse(
        write_multipart(_single(outgoing), boundary),
        status_code=status,
        media_type=multipart_content_type(answer.media_type, boundary, transfer_syntax=None),
        headers={"Accept-Ranges": "bytes"},
    )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _single(part: OutgoingPart) -> AsyncIterator[OutgoingPart]:
    yield part


async def _write_all(answer: Answer, base: str) -> Response:
    """Every bulk value of ``answer``, one part each, streamed (BULK-03)."""
    boundary = new_boundary()
    return StreamingResponse(
        write_multipart(outgoing_parts(answer, base), boundary),
        media_type=multipart_content_type(answer.media_type, boundary, transfer_syntax=None),
    )


async def _all_bulk(services: Services, target: Target, accepted: Accepted) -> Answer:
    return await services.retrieve.bulk(BulkRequest(target, accepted))


add_level_routes(
    router,
    "/bulkdata",
    [
        LevelRoute(
            Level.STUDY,
            "wado-retrieve_study_bulkdata",
            "Retrieve every bulk data value of a study (WADO-RS)",
        ),
        LevelRoute(
            Level.SERIES,
            "wado-retrieve_series_bulkdata",
            "Retrieve every bulk data value of a series (WADO-RS)",
        ),
        LevelRoute(
            Level.INSTANCE,
            "wado-retrieve_instance_bulkdata",
            "Retrieve every bulk data value of an instance (WADO-RS)",
        ),
    ],
    retrieve_endpoint("retrieve_all_bulkdata", bulk_accepted, _all_bulk, _write_all),
    responses={
        200: {
            "description": "every bulk data value, one part each, Content-Location its "
            "BulkDataURI (BULK-03)",
            "content": {_MULTIPART_OCTETS: BINARY},
        },
        **ERRORS,
    },
)

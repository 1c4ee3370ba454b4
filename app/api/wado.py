"""WADO-RS retrieve of instances, metadata and frames (PS3.18 §10.4, Table 10.4.1-1).

Instances (RES-03, WADO-01/02/03/05):

``GET {root}/studies/{study}``, ``.../series/{series}`` and
``.../series/{series}/instances/{instance}`` return the stored PS3.10 files as
``multipart/related; type="application/dicom"`` (NEG-10), or, for one instance asked for as plain
``application/dicom``, as a single-part body (NEG-11).

Everything that decides the status happens before the first byte (STYLE.md C5): UID syntax (400,
GEN-02), the index look-up (404), content negotiation and the transfer-syntax check (406, or 206
with a ``Warning`` when only some instances can be sent, WADO-03), and opening the first blob. The
body is then streamed, reading each blob while it is written. Which bytes are sent, and the
``bytes(128) + b"DICM"`` prefix added to blobs stored without one, are described in
:mod:`app.services.retrieve`.

Metadata (RES-04, META-01/02/04): ``.../metadata`` at each level returns the stored DICOM JSON of
the instances as one ``application/dicom+json`` array in WADO-01 order, spliced as bytes with the
service base URL put in front of each BulkDataURI; an ``ETag`` allows ``If-None-Match`` (304).

Frames (RES-08, FRM-01..06): ``.../instances/{i}/frames/{list}`` returns one part per frame, in
the order asked, read as byte ranges of the stored blob. Frames go out as stored (native ones
little endian, FRM-03); decoding compressed frames is not built yet (406), see
:func:`app.api.negotiation.negotiate_frames`.

Bulk data (BULK-01/02, META-04): ``.../instances/{i}/bulkdata/{tag}[/{item}/{tag}...]``, the
BulkDataURIs of ``/metadata``, returns one value's little-endian bytes (see
:mod:`app.dicom.bulk`) as ``multipart/related`` with one part, or single-part when asked for
plainly (NEG-11); an Encapsulated Document is labelled with its own MIME type (BULK-02).
"""

from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from app.api.deps import ServicesDep, SettingsDep
from app.api.multipart_writer import (
    OutgoingPart,
    multipart_content_type,
    new_boundary,
    write_multipart,
)
from app.api.negotiation import (
    DICOM,
    DICOM_JSON,
    FRAME_MEDIA_TYPES,
    OCTET_STREAM,
    FrameRepresentation,
    Packaging,
    negotiate_bulk,
    negotiate_dicom,
    negotiate_frames,
    negotiate_json,
)
from app.api.urls import instance_url, service_base
from app.api.xml import MULTIPART_XML, wants_xml, xml_response
from app.dicom.uids import EXPLICIT_VR_LITTLE_ENDIAN, validate_uid
from app.services.retrieve import (
    FrameSet,
    InstanceRef,
    Payload,
    RetrieveService,
    metadata_document,
    metadata_etag,
    parse_frame_numbers,
    select,
)

router = APIRouter(tags=["wado"])

MULTIPART_DICOM = f'multipart/related; type="{DICOM}"'

_BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed UID in the path (GEN-02)"},
    404: {"description": "no such study, series or instance"},
    406: {"description": "no acceptable representation (Accept, transfer-syntax)"},
}


def _responses(*, single: bool) -> dict[int | str, dict[str, Any]]:
    if single:  # one instance: sent whole or not at all, so never 206
        return {
            200: {
                "description": "the instance as a PS3.10 file, in one part or single-part",
                "content": {MULTIPART_DICOM: _BINARY, DICOM: _BINARY},
            },
            **_ERRORS,
        }
    return {
        200: {
            "description": "the instances as PS3.10 files, one part each",
            "content": {MULTIPART_DICOM: _BINARY},
        },
        206: {
            "description": "some instances could not be sent in the requested transfer syntax; "
            "a Warning header says how many were left out (WADO-03)",
            "content": {MULTIPART_DICOM: _BINARY},
        },
        **_ERRORS,
    }


AcceptParam = Annotated[
    list[str] | None,
    Query(
        description="media types, as in the Accept header but without wildcards; takes "
        "precedence over the header (PS3.18 §8.3.3.1)",
    ),
]


def _target(
    study: str, series: str | None = None, instance: str | None = None
) -> tuple[str, str | None, str | None]:
    """The validated UIDs of a study, series or instance path (GEN-02: 400 when malformed)."""
    return (
        validate_uid(study, "StudyInstanceUID"),
        None if series is None else validate_uid(series, "SeriesInstanceUID"),
        None if instance is None else validate_uid(instance, "SOPInstanceUID"),
    )


def _instance_uids(study: str, series: str, instance: str) -> tuple[str, str, str]:
    """The validated UIDs of an instance path."""
    return (
        validate_uid(study, "StudyInstanceUID"),
        validate_uid(series, "SeriesInstanceUID"),
        validate_uid(instance, "SOPInstanceUID"),
    )


@router.get(
    "/studies/{study}",
    operation_id="wado-retrieve_study",
    summary="Retrieve a study's instances (WADO-RS)",
    responses=_responses(single=False),
    response_class=Response,
)
async def retrieve_study(
    study: str,
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    accept: AcceptParam = None,
) -> Response:
    refs = await services.retrieve.resolve(*_target(study))
    return await _retrieve(request, services, settings, refs, accept)


@router.get(
    "/studies/{study}/series/{series}",
    operation_id="wado-retrieve_series",
    summary="Retrieve a series' instances (WADO-RS)",
    responses=_responses(single=False),
    response_class=Response,
)
async def retrieve_series(
    study: str,
    series: str,
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    accept: AcceptParam = None,
) -> Response:
    refs = await services.retrieve.resolve(*_target(study, series))
    return await _retrieve(request, services, settings, refs, accept)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}",
    operation_id="wado-retrieve_instance",
    summary="Retrieve one instance (WADO-RS)",
    responses=_responses(single=True),
    response_class=Response,
)
async def retrieve_instance(
    study: str,
    series: str,
    instance: str,
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    accept: AcceptParam = None,
) -> Response:
    refs = await services.retrieve.resolve(*_target(study, series, instance))
    return await _retrieve(request, services, settings, refs, accept, single_part=True)


async def _retrieve(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    refs: Sequence[InstanceRef],
    accept: list[str] | None,
    *,
    single_part: bool = False,
) -> Response:
    header = ", ".join(request.headers.getlist("accept")) or None
    chosen = negotiate_dicom(
        accept or [],
        header,
        single_part=single_part,
        producible=lambda syntax: len(select(refs, syntax).refs),
    )
    selection = select(refs, chosen.transfer_syntax)
    retrieve = services.retrieve
    base = service_base(request, settings)
    first = await retrieve.open(selection.refs[0])
    if chosen.packaging is Packaging.SINGLE:
        return StreamingResponse(
            first.chunks,
            media_type=_part_type(first),
            headers={
                "Content-Length": str(first.length),
                "Content-Location": _location(base, first.ref),
            },
        )
    headers: dict[str, str] = {}
    status = 200
    if selection.omitted:
        # Table 10.4.3-1 (WADO-03): partial content, with a warning saying what is missing
        status = 206
        headers["Warning"] = (
            f'299 lightbox "{selection.omitted} of {len(refs)} instances left out: they cannot '
            f"be sent in transfer syntax {chosen.transfer_syntax or EXPLICIT_VR_LITTLE_ENDIAN} "
            'without transcoding"'
        )
    boundary = new_boundary()
    return StreamingResponse(
        write_multipart(_parts(retrieve, base, first, selection.refs[1:]), boundary),
        status_code=status,
        media_type=multipart_content_type(
            DICOM, boundary, transfer_syntax=selection.transfer_syntax
        ),
        headers=headers,
    )


async def _parts(
    retrieve: RetrieveService, base: str, first: Payload, rest: Sequence[InstanceRef]
) -> AsyncIterator[OutgoingPart]:
    """One part per instance; each blob is opened only when the previous one has been sent."""
    payload = first
    index = 0
    while True:
        yield OutgoingPart(
            content_type=_part_type(payload),
            chunks=payload.chunks,
            content_location=_location(base, payload.ref),
            content_length=payload.length,
        )
        if index == len(rest):
            return
        payload = await retrieve.open(rest[index])
        index += 1


def _part_type(payload: Payload) -> str:
    return f"{DICOM}; transfer-syntax={payload.transfer_syntax}"


def _location(base: str, ref: InstanceRef) -> str:
    return instance_url(base, ref.study_uid, ref.series_uid, ref.sop_uid)


# --- metadata (RES-04, META-01/02/04) ---

_METADATA_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "a DICOM JSON array, one object per instance, in WADO-01 order",
        "content": {
            DICOM_JSON: {"schema": {"type": "array", "items": {"type": "object"}}},
            MULTIPART_XML: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    304: {"description": "not modified (If-None-Match matches the ETag)"},
    **_ERRORS,
}


@router.get(
    "/studies/{study}/metadata",
    operation_id="wado-retrieve_study_metadata",
    summary="Retrieve a study's metadata (WADO-RS)",
    responses=_METADATA_RESPONSES,
    response_class=Response,
)
async def retrieve_study_metadata(
    study: str,
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    accept: AcceptParam = None,
) -> Response:
    return await _metadata(request, services, settings, accept, study)


@router.get(
    "/studies/{study}/series/{series}/metadata",
    operation_id="wado-retrieve_series_metadata",
    summary="Retrieve a series' metadata (WADO-RS)",
    responses=_METADATA_RESPONSES,
    response_class=Response,
)
async def retrieve_series_metadata(
    study: str,
    series: str,
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    accept: AcceptParam = None,
) -> Response:
    return await _metadata(request, services, settings, accept, study, series)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/metadata",
    operation_id="wado-retrieve_instance_metadata",
    summary="Retrieve one instance's metadata (WADO-RS)",
    responses=_METADATA_RESPONSES,
    response_class=Response,
)
async def retrieve_instance_metadata(
    study: str,
    series: str,
    instance: str,
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    accept: AcceptParam = None,
) -> Response:
    return await _metadata(request, services, settings, accept, study, series, instance)


async def _metadata(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    accept: list[str] | None,
    study: str,
    series: str | None = None,
    instance: str | None = None,
) -> Response:
    study_uid, series_uid, sop_uid = _target(study, series, instance)
    header = ", ".join(request.headers.getlist("accept")) or None
    xml = wants_xml(header, accept or [])  # QIDO-20 / PS3.19: the XML form when preferred
    media_type = None if xml else negotiate_json(accept or [], header)
    rows = await services.retrieve.metadata(study_uid, series_uid, sop_uid)
    base = service_base(request, settings)
    etag = metadata_etag(rows, base)
    if xml:
        etag = etag[:-1] + '-xml"'
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag})
    if xml:
        return xml_response(orjson.loads(metadata_document(rows, base)), headers={"ETag": etag})
    return Response(metadata_document(rows, base), media_type=media_type, headers={"ETag": etag})


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match value matches ``etag`` (weak comparison, RFC 9110 §13.1.2)."""
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


# --- frames (RES-08, FRM-01..06) ---


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    operation_id="wado-retrieve_frames",
    summary="Retrieve frames of an instance (WADO-RS)",
    responses={
        200: {
            "description": "one part per frame, in the order asked, each with its "
            "transfer-syntax (FRM-02)",
            "content": {
                f'multipart/related; type="{media}"': _BINARY
                for media in sorted({OCTET_STREAM, *FRAME_MEDIA_TYPES.values()})
            },
        },
        400: {"description": "malformed UID or frame list (FRM-01)"},
        404: {"description": "no such instance or frame, or no pixel data"},
        406: {
            "description": "no acceptable representation: decoding compressed frames is not "
            "supported yet, video syntaxes (FRM-06), frames not separable"
        },
    },
    response_class=Response,
)
async def retrieve_frames(
    study: str,
    series: str,
    instance: str,
    frames: str,
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    accept: AcceptParam = None,
) -> Response:
    study_uid, series_uid, sop_uid = _instance_uids(study, series, instance)
    numbers = parse_frame_numbers(frames)
    retrieve = services.retrieve
    frame_set = await retrieve.frames(study_uid, series_uid, sop_uid, numbers)
    header = ", ".join(request.headers.getlist("accept")) or None
    chosen = negotiate_frames(
        accept or [], header, frame_set.source.transfer_syntax_uid, native=frame_set.native
    )
    base = instance_url(service_base(request, settings), study_uid, series_uid, sop_uid)
    first = await retrieve.read_frame(frame_set, numbers[0])
    boundary = new_boundary()
    return StreamingResponse(
        write_multipart(_frame_parts(retrieve, frame_set, chosen, base, first), boundary),
        media_type=multipart_content_type(
            chosen.media_type, boundary, transfer_syntax=chosen.transfer_syntax
        ),
    )


async def _frame_parts(
    retrieve: RetrieveService,
    frame_set: FrameSet,
    chosen: FrameRepresentation,
    base: str,
    first: bytes,
) -> AsyncIterator[OutgoingPart]:
    """One part per frame; each frame is read when the previous one has been sent."""
    for position, number in enumerate(frame_set.numbers):
        data = first if position == 0 else await retrieve.read_frame(frame_set, number)
        yield OutgoingPart(
            content_type=chosen.part_type,
            chunks=_once(data),
            content_location=f"{base}/frames/{number}",
            content_length=len(data),
        )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


# --- bulk data (BULK-01/02, META-04) ---


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{path:path}",
    operation_id="wado-retrieve_bulkdata",
    summary="Retrieve a bulk data value by its BulkDataURI (WADO-RS)",
    responses={
        200: {
            "description": "the value's little-endian bytes, in one part or single-part; an "
            "Encapsulated Document is labelled with its MIME type (BULK-01/02)",
            "content": {
                f'multipart/related; type="{OCTET_STREAM}"': _BINARY,
                OCTET_STREAM: _BINARY,
            },
        },
        400: {"description": "malformed UID or bulk data path"},
        404: {"description": "no such instance, or no bulk data value at that path"},
        406: {"description": "no acceptable representation"},
    },
    response_class=Response,
)
async def retrieve_bulkdata(
    study: str,
    series: str,
    instance: str,
    path: str,
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    accept: AcceptParam = None,
) -> Response:
    study_uid, series_uid, sop_uid = _instance_uids(study, series, instance)
    value = await services.retrieve.bulk(study_uid, series_uid, sop_uid, path)
    header = ", ".join(request.headers.getlist("accept")) or None
    chosen = negotiate_bulk(accept or [], header, value.media_type or OCTET_STREAM)
    location = (
        f"{instance_url(service_base(request, settings), study_uid, series_uid, sop_uid)}"
        f"/bulkdata/{path}"
    )
    if chosen.packaging is Packaging.SINGLE:
        return Response(
            value.data, media_type=chosen.media_type, headers={"Content-Location": location}
        )
    boundary = new_boundary()
    part = OutgoingPart(
        content_type=chosen.media_type,
        chunks=_once(value.data),
        content_location=location,
        content_length=len(value.data),
    )
    return StreamingResponse(
        write_multipart(_single(part), boundary),
        media_type=multipart_content_type(chosen.media_type, boundary, transfer_syntax=None),
    )


async def _single(part: OutgoingPart) -> AsyncIterator[OutgoingPart]:
    yield part

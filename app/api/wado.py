"""WADO-RS retrieve of instances (PS3.18 §10.4, Table 10.4.1-1; RES-03, WADO-01/02/03/05).

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
"""

from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from app.api.deps import ServicesDep, SettingsDep
from app.api.multipart_writer import (
    OutgoingPart,
    multipart_content_type,
    new_boundary,
    write_multipart,
)
from app.api.negotiation import DICOM, Packaging, negotiate_dicom
from app.api.urls import instance_url, service_base
from app.dicom.uids import EXPLICIT_VR_LITTLE_ENDIAN, validate_uid
from app.services.retrieve import InstanceRef, Payload, RetrieveService, select

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
    refs = await services.retrieve.resolve(validate_uid(study, "StudyInstanceUID"))
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
    refs = await services.retrieve.resolve(
        validate_uid(study, "StudyInstanceUID"), validate_uid(series, "SeriesInstanceUID")
    )
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
    refs = await services.retrieve.resolve(
        validate_uid(study, "StudyInstanceUID"),
        validate_uid(series, "SeriesInstanceUID"),
        validate_uid(instance, "SOPInstanceUID"),
    )
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

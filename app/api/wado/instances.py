"""WADO-RS retrieve of instances (PS3.18 §10.4, Table 10.4.1-1; RES-03, WADO-01/02/03/05).

``GET {root}/studies/{study}``, ``.../series/{series}`` and
``.../series/{series}/instances/{instance}`` return the stored PS3.10 files as
``multipart/related; type="application/dicom"`` (NEG-10), or, for one instance asked for as plain
``application/dicom``, as a single-part body (NEG-11).

Everything that decides the status happens in the retrieve service before the first byte
(STYLE.md C5): UID syntax (400, GEN-02, by the target's dependency), the index look-up (404),
content negotiation and the transfer-syntax plan (406, or 206 with a ``Warning`` when only some
instances can be sent, WADO-03), and opening (or transcoding) the first instance. The body is
then streamed, each blob read while it is written; its length is announced when every part's is
known in advance (all sent as stored). Which bytes are sent, transcoding (NEG-07..09, WADO-04)
and the ``bytes(128) + b"DICM"`` prefix added to blobs stored without one are described in
:mod:`app.services.retrieve`.
"""

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from app.api.deps import ServicesDep, SettingsDep
from app.api.multipart_writer import (
    closing_delimiter,
    multipart_content_type,
    new_boundary,
    part_header,
    write_multipart,
)
from app.api.negotiation import DICOM, ZIP, archive_wanted, dicom_accepted
from app.api.security import note
from app.api.targets import LevelRoute, add_level_routes
from app.api.wado.common import (
    BINARY,
    ERRORS,
    AcceptParam,
    accept_header,
    location,
    outgoing_parts,
    retrieve_endpoint,
    router,
    warning,
)
from app.dicom.target import Level, Target
from app.services.container import Services
from app.services.retrieve import Accepted, Answer, Archive, InstancesRequest, PartHead

MULTIPART_DICOM = f'multipart/related; type="{DICOM}"'


def _responses(*, single: bool) -> dict[int | str, dict[str, Any]]:
    if single:  # one instance: sent whole or not at all, so never 206
        return {
            200: {
                "description": "the instance as a PS3.10 file, in one part or single-part",
                "content": {MULTIPART_DICOM: BINARY, DICOM: BINARY},
            },
            **ERRORS,
        }
    return {
        200: {
            "description": "the instances as PS3.10 files, one part each; or, with Accept: "
            "application/zip, a ZIP archive of them as a PS3.10 file-set with a DICOMDIR",
            "content": {MULTIPART_DICOM: BINARY, ZIP: BINARY},
        },
        206: {
            "description": "some instances could not be sent in the requested transfer syntax; "
            "a Warning header says how many were left out (WADO-03)",
            "content": {MULTIPART_DICOM: BINARY},
        },
        **ERRORS,
    }


async def _instances(services: Services, target: Target, accepted: Accepted) -> Answer:
    return await services.retrieve.instances(InstancesRequest(target, accepted))


async def write_instances(answer: Answer, base: str) -> Response:
    """The instances of ``answer``: one alone (NEG-11), else a multipart/related body, with its
    length when every part's is known (no chunked coding: no framing copy per chunk)."""
    if answer.whole:
        part = await anext(answer.parts)
        return StreamingResponse(
            part.chunks,
            media_type=part.head.media_type,
            headers={
                "Content-Length": str(part.head.length),
                "Content-Location": location(base, part.head),
            },
        )
    headers = warning(answer)
    boundary = new_boundary()
    if answer.heads is not None:
        headers["Content-Length"] = str(multipart_length(answer.heads, base, boundary))
    return StreamingResponse(
        write_multipart(outgoing_parts(answer, base), boundary),
        status_code=206 if answer.omission else 200,
        media_type=multipart_content_type(
            answer.media_type, boundary, transfer_syntax=answer.transfer_syntax
        ),
        headers=headers,
    )


def multipart_length(heads: Sequence[PartHead], base: str, boundary: str) -> int:
    """The exact length of the multipart body :func:`write_multipart` writes for parts with
    these heads (their lengths all known)."""
    total = len(closing_delimiter(boundary))
    for head in heads:
        header = part_header(
            boundary,
            head.media_type,
            content_location=location(base, head),
            content_length=head.length,
        )
        total += len(header) + (head.length or 0) + 2
    return total


def write_archive(archive: Archive) -> Response:
    """A ZIP archive, streamed as it is made (its length is not known in advance)."""
    return StreamingResponse(
        archive.chunks,
        media_type=ZIP,
        headers={"Content-Disposition": f'attachment; filename="{archive.filename}"'},
    )


def _instances_or_archive(target_dependency: Any) -> Callable[..., Any]:
    """The study and series retrieve: the instances (multipart), or a ZIP archive of them when
    the client prefers ``application/zip`` (:func:`~app.api.negotiation.archive_wanted`)."""
    instances = retrieve_endpoint("retrieve", dicom_accepted, _instances, write_instances)(
        target_dependency
    )

    async def retrieve(
        request: Request,
        services: ServicesDep,
        settings: SettingsDep,
        target: Target = target_dependency,
        accept: AcceptParam = None,
    ) -> Response:
        if not archive_wanted(accept or [], accept_header(request)):
            return await instances(request, services, settings, target, accept)  # type: ignore[no-any-return]
        archive = await services.retrieve.archive(target)
        note(request, count=archive.count, detail=f"GET {ZIP}")
        return write_archive(archive)

    return retrieve


add_level_routes(
    router,
    "",
    [
        LevelRoute(
            Level.STUDY,
            "wado-retrieve_study",
            "Retrieve a study's instances (WADO-RS)",
            _responses(single=False),
        ),
        LevelRoute(
            Level.SERIES,
            "wado-retrieve_series",
            "Retrieve a series' instances (WADO-RS)",
            _responses(single=False),
        ),
    ],
    _instances_or_archive,
)
add_level_routes(
    router,
    "",
    [
        LevelRoute(
            Level.INSTANCE,
            "wado-retrieve_instance",
            "Retrieve one instance (WADO-RS)",
            _responses(single=True),
        ),
    ],
    retrieve_endpoint("retrieve", dicom_accepted, _instances, write_instances),
)

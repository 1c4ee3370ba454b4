"""WADO-RS retrieve of instances, metadata and frames (PS3.18 §10.4, Table 10.4.1-1).

Instances (RES-03, WADO-01/02/03/05):

``GET {root}/studies/{study}``, ``.../series/{series}`` and
``.../series/{series}/instances/{instance}`` return the stored PS3.10 files as
``multipart/related; type="application/dicom"`` (NEG-10), or, for one instance asked for as plain
``application/dicom``, as a single-part body (NEG-11).

Everything that decides the status happens before the first byte (STYLE.md C5): UID syntax (400,
GEN-02), the index look-up (404), content negotiation and the transfer-syntax plan (406, or 206
with a ``Warning`` when only some instances can be sent, WADO-03), and opening (or transcoding) the
first instance. The body is then streamed, reading each blob while it is written. Which bytes are
sent, transcoding (NEG-07..09, WADO-04) and the ``bytes(128) + b"DICM"`` prefix added to blobs
stored without one are described in :mod:`app.services.retrieve` and :mod:`app.dicom.transcode`.

Metadata (RES-04, META-01/02/04): ``.../metadata`` at each level returns the stored DICOM JSON of
the instances as one ``application/dicom+json`` array in WADO-01 order, spliced as bytes with the
service base URL put in front of each BulkDataURI; an ``ETag`` allows ``If-None-Match`` (304);
the body is gzipped when ``Accept-Encoding`` allows it (GEN-08).

Frames (RES-08, FRM-01..06): ``.../instances/{i}/frames/{list}`` returns one part per frame, in
the order asked, read as byte ranges of the stored blob: as stored (native ones little endian,
FRM-03; compressed ones labelled with their Table 8.7.3-5 type), or decoded to native pixels when
uncompressed frames are asked for (FRM-05), see :func:`app.api.negotiation.negotiate_frames`. One
frame asked for with a bare media type gets a single-part body (NEG-11).

Pixel data (RES-08, FRM-07): ``/pixeldata`` on an instance returns its frames, one part each;
on a series or study, every frame of every instance with pixel data, in WADO-01 order.

Bulk data (BULK-01..04, META-04): ``.../instances/{i}/bulkdata/{tag}[/{item}/{tag}...]``, the
BulkDataURIs of ``/metadata``, returns one value's little-endian bytes (see
:mod:`app.dicom.bulk`) as ``multipart/related`` with one part, or single-part when asked for
plainly (NEG-11); an Encapsulated Document is labelled with its own MIME type (BULK-02); a
``Range`` header gets 206 with that byte range (416 beyond the value, BULK-04). ``/bulkdata`` on
a study, series or instance returns every bulk value, each part's Content-Location its
BulkDataURI (BULK-03).
"""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from app.api.deps import ServicesDep, SettingsDep
from app.api.errors import problem
from app.api.multipart_writer import (
    OutgoingPart,
    closing_delimiter,
    multipart_body,
    multipart_content_type,
    new_boundary,
    part_header,
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
from app.api.ranges import Unsatisfiable, parse_range
from app.api.targets import LevelRoute, add_level_routes, targets
from app.api.urls import instance_url, service_base
from app.api.xml import MULTIPART_XML, wants_xml, xml_response
from app.config import Settings
from app.dicom.target import Level, Target
from app.dicom.uids import EXPLICIT_VR_LITTLE_ENDIAN
from app.errors import NotAcceptable, NotFound
from app.services.retrieve import (
    BulkItem,
    FrameSet,
    InstanceRef,
    Payload,
    Planned,
    RetrieveService,
    gzip_etag,
    metadata_document,
    metadata_etag,
    stored_length,
)

router = APIRouter(tags=["wado"])

MULTIPART_DICOM = f'multipart/related; type="{DICOM}"'

#: frame responses up to about this size are sent whole, with a Content-Length (the parts held
#: in memory, plus the one that crossed the line); larger ones are streamed part by part
BUFFERED_FRAME_BYTES = 4 << 20

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


def _retrieve_endpoint(target_dependency: Any) -> Callable[..., Any]:
    async def retrieve(
        request: Request,
        services: ServicesDep,
        settings: SettingsDep,
        target: Target = target_dependency,
        accept: AcceptParam = None,
    ) -> Response:
        refs = await services.retrieve.resolve(target)
        single = target.level is Level.INSTANCE
        return await _retrieve(request, services, settings, refs, accept, single_part=single)

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
        LevelRoute(
            Level.INSTANCE,
            "wado-retrieve_instance",
            "Retrieve one instance (WADO-RS)",
            _responses(single=True),
        ),
    ],
    _retrieve_endpoint,
)


def _accept_header(request: Request) -> str | None:
    """All Accept header lines as one value; None when the request has none (NEG-04)."""
    return ", ".join(request.headers.getlist("accept")) or None


def _counts(
    retrieve: RetrieveService, refs: Sequence[InstanceRef], syntax: str | None
) -> tuple[int, int]:
    """(instances sendable, of which transcoded) for a transfer syntax request (NEG-02)."""
    items = retrieve.select(refs, syntax).items
    return len(items), sum(1 for item in items if item.transcoded)


async def _retrieve(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    refs: Sequence[InstanceRef],
    accept: list[str] | None,
    *,
    single_part: bool = False,
) -> Response:
    retrieve = services.retrieve
    try:
        chosen = negotiate_dicom(
            accept or [],
            _accept_header(request),
            single_part=single_part,
            producible=lambda syntax: _counts(retrieve, refs, syntax),
            strict=settings.strict_accept,
        )
    except NotAcceptable as exc:
        refusal = retrieve.decode_refusal(refs)
        if refusal is None:
            raise
        raise NotAcceptable(f"{exc.message} ({refusal})") from None
    selection = retrieve.select(refs, chosen.transfer_syntax)
    base = service_base(request, settings)
    first_item = selection.items[0]
    first = await retrieve.open(first_item.ref, first_item.transfer_syntax)
    if chosen.packaging is Packaging.SINGLE:
        return StreamingResponse(
            first.chunks,
            media_type=_part_type(first.transfer_syntax),
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
            f"be sent in transfer syntax {chosen.transfer_syntax or EXPLICIT_VR_LITTLE_ENDIAN}"
            '"'
        )
    boundary = new_boundary()
    length = _multipart_length(base, boundary, first, selection.items[1:])
    if length is not None:
        # sent with its length rather than in chunked coding: no framing copy per chunk
        headers["Content-Length"] = str(length)
    return StreamingResponse(
        write_multipart(_parts(retrieve, base, first, selection.items[1:]), boundary),
        status_code=status,
        media_type=multipart_content_type(
            DICOM, boundary, transfer_syntax=selection.transfer_syntax
        ),
        headers=headers,
    )


def _multipart_length(
    base: str, boundary: str, first: Payload, rest: Sequence[Planned]
) -> int | None:
    """The exact length of the multipart body :func:`_parts` writes, when every part's length
    is known before its blob is opened (sent as stored, with the PS3.10 prefix recorded)."""
    total = len(closing_delimiter(boundary))
    parts = [(first.ref, first.transfer_syntax, first.length)]
    for item in rest:
        length = None if item.transcoded else stored_length(item.ref)
        if length is None:
            return None
        parts.append((item.ref, item.transfer_syntax, length))
    for ref, syntax, length in parts:
        header = part_header(
            boundary,
            _part_type(syntax),
            content_location=_location(base, ref),
            content_length=length,
        )
        total += len(header) + length + 2
    return total


async def _parts(
    retrieve: RetrieveService, base: str, first: Payload, rest: Sequence[Planned]
) -> AsyncGenerator[OutgoingPart, None]:
    """One part per instance; the next blob is opened while the current part is being sent.

    Opening an instance sent as stored reads its first chunk only (a whole small blob; on S3 the
    first ranged GET): doing that for part N+1 while part N drains to the socket overlaps the
    read with the send, at the cost of one chunk held ahead. A transcoded instance is decoded
    whole when opened, so it is opened only when its turn comes (memory stays one instance).
    """
    payload = first
    ahead: asyncio.Task[Payload] | None = None
    try:
        for index in range(len(rest) + 1):
            if index < len(rest) and not rest[index].transcoded:
                ahead = asyncio.ensure_future(_open(retrieve, rest[index]))
            yield OutgoingPart(
                content_type=_part_type(payload.transfer_syntax),
                chunks=payload.chunks,
                content_location=_location(base, payload.ref),
                content_length=payload.length,
            )
            if index == len(rest):
                return
            if ahead is not None:
                payload, ahead = await ahead, None
            else:
                payload = await _open(retrieve, rest[index])
    finally:
        if ahead is not None:  # the client went away: release what was opened ahead
            ahead.cancel()
            opened = (await asyncio.gather(ahead, return_exceptions=True))[0]
            if isinstance(opened, Payload):
                await opened.close()


async def _open(retrieve: RetrieveService, planned: Planned) -> Payload:
    return await retrieve.open(planned.ref, planned.transfer_syntax)


def _part_type(transfer_syntax: str) -> str:
    return f"{DICOM}; transfer-syntax={transfer_syntax}"


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


def _metadata_endpoint(target_dependency: Any) -> Callable[..., Any]:
    async def retrieve_metadata(
        request: Request,
        services: ServicesDep,
        settings: SettingsDep,
        target: Target = target_dependency,
        accept: AcceptParam = None,
    ) -> Response:
        return await _metadata(request, services, settings, accept, target)

    return retrieve_metadata


async def _metadata(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    accept: list[str] | None,
    target: Target,
) -> Response:
    header = _accept_header(request)
    xml = wants_xml(header, accept or [])  # QIDO-20 / PS3.19: the XML form when preferred
    media_type = (
        None if xml else negotiate_json(accept or [], header, strict=settings.strict_accept)
    )
    retrieve = services.retrieve
    base = service_base(request, settings)
    if xml:
        rows = await retrieve.metadata(target)
        etag = metadata_etag(rows, base)[:-1] + '-xml"'
        if _matches(request.headers.get("if-none-match"), (etag,)):
            return Response(status_code=304, headers={"ETag": etag})
        return xml_response(orjson.loads(metadata_document(rows, base)), headers={"ETag": etag})
    gzipped = _accepts_gzip(request.headers.get("accept-encoding"))
    etag = await retrieve.metadata_tag(base, target)
    headers = {"Vary": "Accept-Encoding"}
    if _matches(request.headers.get("if-none-match"), (etag, gzip_etag(etag))):
        headers["ETag"] = gzip_etag(etag) if gzipped else etag
        return Response(status_code=304, headers=headers)
    document = await retrieve.metadata_document(base, target, etag=etag, gzipped=gzipped)
    headers["ETag"] = document.etag
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return Response(document.body, media_type=media_type, headers=headers)


add_level_routes(
    router,
    "/metadata",
    [
        LevelRoute(
            Level.STUDY, "wado-retrieve_study_metadata", "Retrieve a study's metadata (WADO-RS)"
        ),
        LevelRoute(
            Level.SERIES,
            "wado-retrieve_series_metadata",
            "Retrieve a series' metadata (WADO-RS)",
        ),
        LevelRoute(
            Level.INSTANCE,
            "wado-retrieve_instance_metadata",
            "Retrieve one instance's metadata (WADO-RS)",
        ),
    ],
    _metadata_endpoint,
    responses=_METADATA_RESPONSES,
)


def _matches(if_none_match: str | None, etags: Sequence[str]) -> bool:
    """Whether an If-None-Match value matches one of ``etags`` (weak comparison, RFC 9110
    §13.1.2): the plain and the gzip representation are the same content."""
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or any(etag in tags for etag in etags)


def _accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether Accept-Encoding allows gzip (RFC 9110 §12.5.3), explicitly or by ``*``.

    >>> _accepts_gzip("gzip, deflate"), _accepts_gzip("gzip;q=0"), _accepts_gzip("*")
    (True, False, True)
    """
    if not accept_encoding:
        return False
    weights: dict[str, float] = {}
    for coding in accept_encoding.split(","):
        name, _, params = coding.partition(";")
        q = 1.0
        key, _, value = params.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
        weights[name.strip().lower()] = q
    if "gzip" in weights or "x-gzip" in weights:
        return max(weights.get("gzip", 0.0), weights.get("x-gzip", 0.0)) > 0
    return weights.get("*", 0.0) > 0


# --- frames and pixel data (RES-08, FRM-01..07) ---

_FRAME_CONTENT = {
    **{
        f'multipart/related; type="{media}"': _BINARY
        for media in sorted({OCTET_STREAM, *FRAME_MEDIA_TYPES.values()})
    },
    OCTET_STREAM: _BINARY,
}


def _pixel_responses(what: str, *, partial: bool) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {
        200: {"description": what, "content": _FRAME_CONTENT},
        400: {"description": "malformed UID or frame list (FRM-01)"},
        404: {"description": "no such study, series, instance or frame, or no pixel data"},
        406: {
            "description": "no acceptable representation: a type or syntax we would have to "
            "encode into, video syntaxes (FRM-06), undecodable frames"
        },
    }
    if partial:
        out[206] = {
            "description": "the instances whose frames cannot be sent as asked are left out; a "
            "Warning header says how many (WADO-03)",
            "content": _FRAME_CONTENT,
        }
    return out


def _frames_endpoint(target_dependency: Any) -> Callable[..., Any]:
    async def retrieve_frames(
        request: Request,
        services: ServicesDep,
        settings: SettingsDep,
        target: Target = target_dependency,
        accept: AcceptParam = None,
    ) -> Response:
        numbers = target.frames or ()
        frame_set = await services.retrieve.frames(target)
        single = len(numbers) == 1
        chosen = _negotiate_frames(request, settings, accept, frame_set, single_part=single)
        base = service_base(request, settings)
        return await _pixel_response(services.retrieve, base, [(frame_set, chosen)])

    return retrieve_frames


def _pixeldata_endpoint(target_dependency: Any) -> Callable[..., Any]:
    async def retrieve_pixeldata(
        request: Request,
        services: ServicesDep,
        settings: SettingsDep,
        target: Target = target_dependency,
        accept: AcceptParam = None,
    ) -> Response:
        if target.level is Level.INSTANCE:
            return await _instance_pixeldata(request, services, settings, accept, target)
        return await _many_pixeldata(request, services, settings, accept, target)

    return retrieve_pixeldata


async def _instance_pixeldata(
    request: Request,
    services: ServicesDep,
    settings: Settings,
    accept: list[str] | None,
    target: Target,
) -> Response:
    sets, unreadable = await services.retrieve.pixel_sources(target)
    if unreadable:
        raise NotAcceptable(
            "the pixel data of this instance cannot be sent frame by frame (video or "
            "undecodable); retrieve the instance or its BulkDataURI instead"
        )
    [frame_set] = sets
    chosen = _negotiate_frames(
        request, settings, accept, frame_set, single_part=len(frame_set.numbers) == 1
    )
    base = service_base(request, settings)
    return await _pixel_response(services.retrieve, base, [(frame_set, chosen)])


_EVERY_FRAME = _pixel_responses("every frame of every instance, WADO-01 order", partial=True)
add_level_routes(
    router,
    "",
    [
        LevelRoute(
            Level.FRAMES,
            "wado-retrieve_frames",
            "Retrieve frames of an instance (WADO-RS)",
            _pixel_responses(
                "one part per frame, in the order asked, each with its transfer-syntax "
                "(FRM-02); one frame asked for as a bare type: a single-part body",
                partial=False,
            ),
        )
    ],
    _frames_endpoint,
)
add_level_routes(
    router,
    "/pixeldata",
    [
        LevelRoute(
            Level.INSTANCE,
            "wado-retrieve_instance_pixeldata",
            "Retrieve the pixel data of an instance, frame by frame (WADO-RS)",
            _pixel_responses("one part per frame (FRM-07)", partial=False),
        ),
        LevelRoute(
            Level.SERIES,
            "wado-retrieve_series_pixeldata",
            "Retrieve the pixel data of a series' instances (WADO-RS)",
            _EVERY_FRAME,
        ),
        LevelRoute(
            Level.STUDY,
            "wado-retrieve_study_pixeldata",
            "Retrieve the pixel data of a study's instances (WADO-RS)",
            _EVERY_FRAME,
        ),
    ],
    _pixeldata_endpoint,
)


async def _many_pixeldata(
    request: Request,
    services: ServicesDep,
    settings: Settings,
    accept: list[str] | None,
    target: Target,
) -> Response:
    sets, unreadable = await services.retrieve.pixel_sources(target)
    omitted = unreadable
    plans: list[tuple[FrameSet, FrameRepresentation]] = []
    refusal: NotAcceptable | None = None
    for frame_set in sets:
        try:
            plans.append((frame_set, _negotiate_frames(request, settings, accept, frame_set)))
        except NotAcceptable as exc:
            refusal = exc
            omitted += 1
    if not plans:
        raise refusal or NotAcceptable(
            "the pixel data of these instances cannot be sent frame by frame (video or undecodable)"
        )
    headers: dict[str, str] = {}
    if omitted:
        headers["Warning"] = (
            f'299 lightbox "{omitted} of {len(sets) + unreadable} instances with pixel data '
            'left out: their frames cannot be sent as asked"'
        )
    base = service_base(request, settings)
    return await _pixel_response(
        services.retrieve, base, plans, status=206 if omitted else 200, headers=headers
    )


def _negotiate_frames(
    request: Request,
    settings: Settings,
    accept: list[str] | None,
    frame_set: FrameSet,
    *,
    single_part: bool = False,
) -> FrameRepresentation:
    if frame_set.refusal is not None and not (frame_set.as_stored or frame_set.decodable):
        # a deflated data set too large to inflate: no representation of its frames at all
        raise NotAcceptable(f"the frames of this instance cannot be read: {frame_set.refusal}")
    return negotiate_frames(
        accept or [],
        _accept_header(request),
        frame_set.source.transfer_syntax_uid,
        native=frame_set.native,
        as_stored=frame_set.as_stored,
        decodable=frame_set.decodable,
        single_part=single_part,
        strict=settings.strict_accept,
        refusal=frame_set.refusal,
    )


async def _pixel_response(
    retrieve: RetrieveService,
    base: str,
    plans: Sequence[tuple[FrameSet, FrameRepresentation]],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Frames of one or more instances; the first frame is read (and decoded) before the
    status is sent (C5)."""
    parts = _frame_parts(retrieve, base, plans)
    first = await anext(parts)
    first_rep = plans[0][1]
    if first_rep.packaging is Packaging.SINGLE:
        await parts.aclose()
        data = b"".join([chunk async for chunk in first.chunks])
        return Response(
            data,
            media_type=first_rep.part_type,
            headers={"Content-Location": first.content_location or ""},
        )
    syntaxes = {rep.transfer_syntax for _, rep in plans}
    boundary = new_boundary()
    media_type = multipart_content_type(
        first_rep.media_type,
        boundary,
        transfer_syntax=syntaxes.pop() if len(syntaxes) == 1 else None,
    )
    # frames are read whole, so a response of a few small frames (a viewer's usual request:
    # one frame) is sent whole too, with a Content-Length: no streaming machinery per request
    held = [first]
    size = first.content_length or 0
    while size <= BUFFERED_FRAME_BYTES:
        part = await anext(parts, None)
        if part is None:
            body = await multipart_body(held, boundary)
            return Response(body, status_code=status, media_type=media_type, headers=headers)
        held.append(part)
        size += part.content_length or 0
    return StreamingResponse(
        write_multipart(_chain(held, parts), boundary),
        status_code=status,
        media_type=media_type,
        headers=headers,
    )


async def _frame_parts(
    retrieve: RetrieveService, base: str, plans: Sequence[tuple[FrameSet, FrameRepresentation]]
) -> AsyncGenerator[OutgoingPart, None]:
    """One part per frame; each frame is read (and decoded) when the previous one was sent."""
    for frame_set, rep in plans:
        source = frame_set.source
        url = instance_url(base, source.study_uid, source.series_uid, source.sop_uid)
        if rep.decode:
            frame_set = await retrieve.prepare_decoding(frame_set)
        numbers = iter(frame_set.numbers)
        async for data in retrieve.iter_frames(frame_set, decode=rep.decode):
            yield OutgoingPart(
                content_type=rep.part_type,
                chunks=_once(data),
                content_location=f"{url}/frames/{next(numbers)}",
                content_length=len(data),
            )


async def _chain(
    held: Sequence[OutgoingPart], rest: AsyncIterator[OutgoingPart]
) -> AsyncIterator[OutgoingPart]:
    for part in held:
        yield part
    async for part in rest:
        yield part


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


# --- bulk data (BULK-01..04, META-04) ---


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
            "content": {
                f'multipart/related; type="{OCTET_STREAM}"': _BINARY,
                OCTET_STREAM: _BINARY,
            },
        },
        206: {
            "description": "the byte range a Range header asked for, with Content-Range "
            "(BULK-04; in the one part of a multipart answer)",
            "content": {
                f'multipart/related; type="{OCTET_STREAM}"': _BINARY,
                OCTET_STREAM: _BINARY,
            },
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
    value = await services.retrieve.bulk(target, path)
    chosen = negotiate_bulk(
        accept or [],
        _accept_header(request),
        value.media_type or OCTET_STREAM,
        strict=settings.strict_accept,
    )
    location = f"{service_base(request, settings)}/{target}/bulkdata/{path}"
    data = value.data
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
    headers = {"Content-Location": location, "Accept-Ranges": "bytes"}
    if chosen.packaging is Packaging.SINGLE:
        if content_range is not None:
            headers["Content-Range"] = content_range
        return Response(data, status_code=status, media_type=chosen.media_type, headers=headers)
    boundary = new_boundary()
    part = OutgoingPart(
        content_type=chosen.media_type,
        chunks=_once(data),
        content_location=location,
        content_length=len(data),
        content_range=content_range,
    )
    return StreamingResponse(
        write_multipart(_single(part), boundary),
        status_code=status,
        media_type=multipart_content_type(chosen.media_type, boundary, transfer_syntax=None),
        headers={"Accept-Ranges": "bytes"},
    )


async def _single(part: OutgoingPart) -> AsyncIterator[OutgoingPart]:
    yield part


_BULK_ALL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "every bulk data value, one part each, Content-Location its "
        "BulkDataURI (BULK-03)",
        "content": {f'multipart/related; type="{OCTET_STREAM}"': _BINARY},
    },
    **_ERRORS,
}


def _bulk_endpoint(target_dependency: Any) -> Callable[..., Any]:
    async def retrieve_all_bulkdata(
        request: Request,
        services: ServicesDep,
        settings: SettingsDep,
        target: Target = target_dependency,
        accept: AcceptParam = None,
    ) -> Response:
        return await _all_bulk(request, services, settings, accept, target)

    return retrieve_all_bulkdata


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
    _bulk_endpoint,
    responses=_BULK_ALL_RESPONSES,
)


async def _all_bulk(
    request: Request,
    services: ServicesDep,
    settings: Settings,
    accept: list[str] | None,
    target: Target,
) -> Response:
    retrieve = services.retrieve
    targets = await retrieve.bulk_targets(target)
    query, header = accept or [], _accept_header(request)
    chosen = negotiate_bulk(query, header, strict=settings.strict_accept)
    if chosen.packaging is Packaging.SINGLE:
        raise NotAcceptable(
            "several bulk data values are sent as multipart/related only; acceptable: "
            f'multipart/related; type="{OCTET_STREAM}"'
        )
    base = service_base(request, settings)
    items = retrieve.iter_bulk(targets)
    first = await anext(items, None)
    if first is None:
        raise NotFound("no bulk data: none of the BulkDataURIs leads to a value")

    def part(item: BulkItem) -> OutgoingPart | None:
        natural = item.value.media_type or OCTET_STREAM
        try:
            rep = negotiate_bulk(query, header, natural, strict=settings.strict_accept)
        except NotAcceptable:
            return None
        ref = item.ref
        return OutgoingPart(
            content_type=rep.media_type,
            chunks=_once(item.value.data),
            content_location=f"{instance_url(base, ref.study_uid, ref.series_uid, ref.sop_uid)}"
            f"/bulkdata/{item.path}",
            content_length=len(item.value.data),
        )

    async def parts() -> AsyncIterator[OutgoingPart]:
        out = part(first)
        if out is not None:
            yield out
        async for item in items:
            out = part(item)
            if out is not None:
                yield out

    boundary = new_boundary()
    return StreamingResponse(
        write_multipart(parts(), boundary),
        media_type=multipart_content_type(chosen.media_type, boundary, transfer_syntax=None),
    )

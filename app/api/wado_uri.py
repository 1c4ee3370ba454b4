"""WADO-URI: ``GET {root}/wado?requestType=WADO&...`` (PS3.18 chapter 9; RES-09, URI-01..06).

One instance per request, named by ``studyUID``, ``seriesUID`` and ``objectUID`` (all required;
UIDs that contradict the stored hierarchy are 404). ``contentType`` is the URI service's
``accept`` (URI-02): ``application/dicom`` or rendered types (``image/jpg`` accepted for
``image/jpeg``), without media type parameters. Without it, the Accept header decides and
``*/*`` (or no header) means ``image/jpeg`` (URI-03). An Accept header that excludes the
chosen type is 406 (URI-06).

DICOM retrieval (§9.4, URI-04): ``transferSyntax`` is optional (exactly one valid UID, else 400;
valid but not producible: 406); without it the default is Explicit VR Little Endian. The stored
bytes are sent when the stored syntax is the one asked for; otherwise the instance is re-encoded
(native syntaxes only, see :mod:`app.services.render`). ``anonymize=yes`` applies the PS3.15
Basic Profile with Clean Pixel Data (:mod:`app.dicom.anonymize`) and refuses (406) an object it
cannot clean; the original is never sent then.

Rendered retrieval (§9.5, URI-05): ``frameNumber`` (multi-frame objects only), ``rows`` /
``columns`` (bounds keeping the aspect ratio, either or both; asking for more pixels than
``render.max_output_pixels`` is 400, and one alone never enlarges the image beyond them),
``region`` (normalised crop), ``windowCenter`` + ``windowWidth`` (together), ``imageQuality``,
``annotation`` or ``imageAnnotation``. ``presentationUID`` / ``presentationSeriesUID`` are
checked (400 when combined with frameNumber, region or window, §9.5.2.3) but presentation
states are not applied: 406. Every response carries Content-Type and Content-Location (URI-06).
"""

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from app.api.deps import ServicesDep
from app.api.errors import problem
from app.api.negotiation import DICOM, parse_accept, parse_media_range
from app.api.rendered import ALIASES, negotiate_rendered
from app.dicom import render as rendering
from app.dicom.render import IMAGE_TYPES, ObjectKind, RenderParameterError, RenderParams
from app.dicom.target import Target
from app.dicom.uids import is_valid_uid
from app.errors import BadRequest, LightboxError, NotAcceptable
from app.services.render import Choice, instance_frames, kind, offered_types, render_etag

router = APIRouter(tags=["wado-uri"])

_BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}

#: parameters that only make sense for rendered content (§9.5)
RENDERED_ONLY = (
    "frameNumber",
    "rows",
    "columns",
    "region",
    "windowCenter",
    "windowWidth",
    "imageQuality",
    "annotation",
    "imageAnnotation",
    "presentationUID",
    "presentationSeriesUID",
)
#: parameters that only make sense for application/dicom (§9.4)
DICOM_ONLY = ("transferSyntax", "anonymize")


_DESCRIPTIONS = {
    "requestType": "must be WADO (required)",
    "studyUID": "Study Instance UID (required)",
    "seriesUID": "Series Instance UID (required)",
    "objectUID": "SOP Instance UID (required)",
    "contentType": "application/dicom, or rendered media types in order of preference",
    "charset": "accepted and ignored",
    "transferSyntax": "application/dicom only: one Transfer Syntax UID",
    "anonymize": "application/dicom only: yes (PS3.15 Basic Profile, Clean Pixel Data)",
    "frameNumber": "1-based frame of a multi-frame object",
    "rows": "maximum height in pixels (aspect ratio kept)",
    "columns": "maximum width in pixels (aspect ratio kept)",
    "region": "xmin,ymin,xmax,ymax, normalised to 0..1",
    "windowCenter": "window center (with windowWidth)",
    "windowWidth": "window width (with windowCenter)",
    "imageQuality": "JPEG quality 1-100",
    "annotation": "patient,technique: text burned in",
    "imageAnnotation": "same as annotation (the name Table 9.5.1-1 uses)",
    "presentationUID": "presentation state SOP Instance UID (not applied: 406)",
    "presentationSeriesUID": "presentation state Series Instance UID",
}
_PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "description": text,
        "schema": {"type": "string"},
    }
    for name, text in _DESCRIPTIONS.items()
]


def _one(request: Request, name: str) -> str | None:
    """The single value of ``name``, None when absent; 400 when given several times."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"invalid {name}: given {len(values)} times, expected once")
    return values[0]


def _uid(request: Request, name: str) -> str:
    value = _one(request, name)
    if value is None or value == "":
        raise BadRequest(f"missing {name}: studyUID, seriesUID and objectUID are all required")
    if not is_valid_uid(value):
        raise BadRequest(f"invalid {name} {value!r}: not a valid UID")
    return value


def _positive(request: Request, name: str) -> int | None:
    value = _one(request, name)
    if value is None:
        return None
    text = value.strip()
    if not rendering.is_digits(text) or int(text) <= 0:
        raise BadRequest(f"invalid {name} {value[:24]!r}: expected a positive integer")
    return int(text)


def _content_types(value: str) -> list[str]:
    """The media types of ``contentType`` in order (URI-02): no parameters, aliases mapped."""
    types: list[str] = []
    for piece in value.split(","):
        if not piece.strip():
            continue
        parsed = parse_media_range(piece)
        if parsed is None or parsed.is_wildcard:
            raise BadRequest(f"invalid contentType {piece.strip()!r}: expected a media type")
        if parsed.params or parsed.q != 1.0:
            raise BadRequest(
                f"invalid contentType {piece.strip()!r}: media type parameters (transfer-syntax, "
                "charset, q) are not allowed in contentType; use transferSyntax and charset"
            )
        types.append(ALIASES.get(parsed.essence, parsed.essence))
    if not types:
        raise BadRequest("invalid contentType: empty")
    return types


def _accepts(header: str | None, media_type: str) -> bool:
    """Whether an Accept header (None: anything) allows ``media_type``."""
    if header is None:
        return True
    for r in parse_accept(header):
        essence = ALIASES.get(r.essence, r.essence)
        if r.q <= 0:
            continue
        if essence in ("*/*", media_type) or (
            essence.endswith("/*") and media_type.startswith(essence[:-1])
        ):
            return True
    return False


@router.get(
    "/wado",
    operation_id="wado-uri",
    summary="WADO-URI: one instance as DICOM or rendered (PS3.18 chapter 9)",
    responses={
        200: {
            "description": "the instance (application/dicom) or its rendering",
            "content": {
                DICOM: _BINARY,
                **dict.fromkeys(IMAGE_TYPES, _BINARY),
                rendering.TEXT_HTML: {"schema": {"type": "string"}},
                rendering.TEXT_PLAIN: {"schema": {"type": "string"}},
                rendering.PDF: _BINARY,
            },
        },
        400: {"description": "missing or malformed parameter (the message names it)"},
        404: {"description": "no such instance under that study and series"},
        406: {
            "description": "the requested type or transfer syntax cannot be produced, or the "
            "object cannot be anonymised"
        },
    },
    response_class=Response,
    openapi_extra={"parameters": _PARAMETERS},
)
async def wado_uri(request: Request, services: ServicesDep) -> Response:
    try:
        return await _wado_uri(request, services)
    except LightboxError as exc:  # URI-06: error responses carry Content-Location too
        return problem(exc.http_status, exc.message, {"Content-Location": str(request.url)})


async def _wado_uri(request: Request, services: ServicesDep) -> Response:
    # every value is read from the query string below, so repeats are caught (400)
    request_type = _one(request, "requestType")
    if request_type != "WADO":
        raise BadRequest(
            "invalid requestType: expected requestType=WADO"
            if request_type is not None
            else "missing requestType: expected requestType=WADO"
        )
    study_uid = _uid(request, "studyUID")
    series_uid = _uid(request, "seriesUID")
    sop_uid = _uid(request, "objectUID")
    header = ", ".join(request.headers.getlist("accept")) or None
    content_type = _one(request, "contentType")
    location = str(request.url)
    render = services.render
    if content_type is not None:
        types = _content_types(content_type)
        dicom = types[0] == DICOM
    else:
        types = []
        # URI-03: no contentType and Accept */* (or none) -> image/jpeg
        dicom = (
            header is not None
            and any(r.essence == DICOM and r.q > 0 for r in parse_accept(header))
            and not _accepts(header, "image/jpeg")
        )
    given = set(request.query_params)
    if dicom:
        misplaced = [name for name in RENDERED_ONLY if name in given]
        if misplaced:
            raise BadRequest(
                f"invalid {misplaced[0]}: it applies to rendered content types only, not to "
                "application/dicom"
            )
        if not _accepts(header, DICOM):
            raise NotAcceptable("the Accept header does not allow application/dicom")
        return await _dicom(request, services, location, study_uid, series_uid, sop_uid)
    misplaced = [name for name in DICOM_ONLY if name in given]
    if misplaced:
        raise BadRequest(
            f"invalid {misplaced[0]}: it applies to contentType=application/dicom only"
        )
    params = _rendered_params(request, render.limits.pixels)
    sources = await render.sources(Target(study_uid, series_uid, sop_uid))
    source = sources[0]
    offered = offered_types([kind(source)])
    if not offered:
        raise NotAcceptable("the object has no pixel data and no text to render")
    if types:
        chosen = next((t for t in types if t in offered), None)
        if chosen is None:
            raise NotAcceptable(
                f"contentType {','.join(types)} cannot be produced for this object; "
                f"acceptable: {', '.join(offered)}"
            )
        if not _accepts(header, chosen):
            raise NotAcceptable(f"the Accept header does not allow {chosen}")
    else:
        chosen = negotiate_rendered([], header, offered, multipart=False).media_type
    frames = source.number_of_frames or 1
    frame_number = _positive(request, "frameNumber")
    if frame_number is not None and frames <= 1:
        raise BadRequest("invalid frameNumber: the object is not a multi-frame object")
    if frame_number is not None and frame_number > frames:
        raise BadRequest(f"invalid frameNumber {frame_number}: the object has {frames} frames")
    headers = {"Content-Location": location, "Cache-Control": "private"}
    if kind(source) != ObjectKind.IMAGE:
        data = await render.text(source, chosen)
        return Response(data, media_type=chosen, headers=headers)
    params = replace(params, media_type=chosen)
    if frame_number is not None:
        params = replace(params, frames=(frame_number,))
    else:
        params = replace(params, frames=instance_frames(source, Choice(chosen)))
    etag = render_etag([source], params.key())
    data = await render.render(source, params)
    return Response(data, media_type=chosen, headers={**headers, "ETag": etag})


def _rendered_params(request: Request, max_pixels: int) -> RenderParams:
    """The §9.5 parameters as :class:`RenderParams` (URI-05), 400 naming the bad one; rows and
    columns asking for more than ``max_pixels`` pixels are refused."""
    presentation = _one(request, "presentationUID")
    presentation_series = _one(request, "presentationSeriesUID")
    center = _one(request, "windowCenter")
    width = _one(request, "windowWidth")
    region_text = _one(request, "region")
    frame_text = _one(request, "frameNumber")
    if (center is None) != (width is None):
        raise BadRequest("invalid windowCenter/windowWidth: both must be given, or neither")
    if presentation is not None or presentation_series is not None:
        if presentation is None or presentation_series is None:
            raise BadRequest(
                "invalid presentationUID/presentationSeriesUID: both must be given together"
            )
        for name, value in (
            ("presentationUID", presentation),
            ("presentationSeriesUID", presentation_series),
        ):
            if not is_valid_uid(value):
                raise BadRequest(f"invalid {name} {value!r}: not a valid UID")
        clash = [
            name
            for name, value in (
                ("frameNumber", frame_text),
                ("region", region_text),
                ("windowCenter", center),
                ("windowWidth", width),
            )
            if value is not None
        ]
        if clash:
            raise BadRequest(f"invalid {clash[0]}: not allowed together with presentationUID")
    rows = _positive(request, "rows")
    columns = _positive(request, "columns")
    annotations = [v for v in (_one(request, "annotation"), _one(request, "imageAnnotation")) if v]
    if any(v == "" for v in (_one(request, "annotation"), _one(request, "imageAnnotation"))):
        raise BadRequest("invalid annotation: empty value")
    try:
        # rows and columns are maxima (URI-05): alone, one still bounds a side of the output
        bounded = "rows and columns" if rows and columns else "rows" if rows else "columns"
        rendering.check_output_size(bounded, columns, rows, max_pixels)
        quality = rendering.parse_quality(_one(request, "imageQuality"), "imageQuality")
        region = None if region_text is None else rendering.parse_region(region_text)
        window = None
        if center is not None and width is not None:
            window = rendering.make_window(
                rendering.parse_number(center, "windowCenter"),
                rendering.parse_number(width, "windowWidth"),
                "LINEAR",
                "windowWidth",
            )
        kept: tuple[str, ...] = ()
        if annotations:
            kept, _ = rendering.parse_annotation(",".join(annotations))
    except RenderParameterError as exc:
        raise BadRequest(str(exc)) from exc
    if presentation is not None:
        raise NotAcceptable("presentation states are not applied by this server")
    max_size = None if rows is None and columns is None else (columns, rows)
    return RenderParams(
        quality=quality, region=region, window=window, annotation=kept, max_size=max_size
    )


async def _dicom(
    request: Request,
    services: ServicesDep,
    location: str,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
) -> Response:
    """§9.4: the instance as application/dicom (URI-04)."""
    syntax = _one(request, "transferSyntax")
    if syntax is not None and (not is_valid_uid(syntax.strip()) or "," in syntax):
        raise BadRequest(
            f"invalid transferSyntax {syntax!r}: expected exactly one transfer syntax UID"
        )
    anonymize = _one(request, "anonymize")
    if anonymize is not None and anonymize != "yes":
        raise BadRequest(f"invalid anonymize {anonymize!r}: the only value allowed is yes")
    render = services.render
    source = (await render.sources(Target(study_uid, series_uid, sop_uid)))[0]
    headers = {"Content-Location": location}
    data = await render.dicom(
        source, None if syntax is None else syntax.strip(), anonymized=anonymize == "yes"
    )
    if data is not None:
        return Response(data, media_type=DICOM, headers=headers)
    payload = await services.retrieve.open(source.ref)
    return StreamingResponse(
        payload.chunks,
        media_type=DICOM,
        headers={**headers, "Content-Length": str(payload.length)},
    )

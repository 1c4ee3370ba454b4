"""STOW-RS: ``POST {root}/studies`` and ``POST {root}/studies/{study}`` (PS3.18 §10.5, Annex I).

The body streams through the multipart reader into the ingest session part by part; the answer
is the Store Instances Response Module (Table I.1-1) as DICOM JSON, with the status of
Table 10.5.3-1 (STOW-15) decided from the per-instance outcomes.
"""

import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from app.api.deps import ServicesDep, SettingsDep
from app.api.errors import problem
from app.api.multipart import FramingError, MediaType, Part, PartFailed, read_multipart
from app.api.negotiation import parse_accept
from app.api.security import note, write_audit
from app.api.stow_json import read_dicom_json_parts
from app.api.urls import instance_url, service_base, study_url
from app.dicom.status import Status
from app.dicom.uids import validate_uid
from app.errors import InvalidInstance, NotAcceptable, PayloadTooLarge, UnsupportedMediaType
from app.services.ingest import IngestResult, IngestSession

log = logging.getLogger(__name__)
router = APIRouter(tags=["stow"])

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": 'multipart/related; type="application/dicom"; boundary=... (one PS3.10 '
        "file per part), a single application/dicom body (STOW-03), or "
        'multipart/related; type="application/dicom+json" or "application/dicom+xml" (metadata, '
        "then bulk data parts bound by Content-Location, STOW-02)",
        "content": {
            'multipart/related; type="application/dicom"': {
                "schema": {"type": "string", "format": "binary"}
            },
            'multipart/related; type="application/dicom+json"': {
                "schema": {"type": "string", "format": "binary"}
            },
            'multipart/related; type="application/dicom+xml"': {
                "schema": {"type": "string", "format": "binary"}
            },
            DICOM: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "every instance stored", "content": {DICOM_JSON: {}}},
    202: {"description": "some stored, some failed or warned", "content": {DICOM_JSON: {}}},
    400: {"description": "nothing stored; every failure a syntax failure"},
    409: {"description": "nothing stored (conflicts, SOP class, study UID mismatch)"},
    413: {"description": "request body too large"},
    415: {"description": "unsupported request media type"},
}


@router.post(
    "/studies",
    operation_id="stow-store_instances",
    summary="Store instances (STOW-RS)",
    openapi_extra=_BODY_DOC,
    responses=_RESPONSES,
    response_class=Response,
)
async def store_instances(
    request: Request, services: ServicesDep, settings: SettingsDep
) -> Response:
    return await _store(request, services, settings, None)


@router.post(
    "/studies/{study}",
    operation_id="stow-store_study_instances",
    summary="Store instances into one study (STOW-RS)",
    openapi_extra=_BODY_DOC,
    responses=_RESPONSES,
    response_class=Response,
)
async def store_study_instances(
    study: str, request: Request, services: ServicesDep, settings: SettingsDep
) -> Response:
    return await _store(request, services, settings, validate_uid(study, "study"))


_RESPONSE_TYPES = {"application/dicom+json", "application/json", "application/*", "*/*"}


def _check_accept(value: str | None) -> None:
    """STOW-12: the response is DICOM JSON; refuse (406) before reading a byte of the body."""
    if value is None or not value.strip():
        return
    if not any(r.q > 0 and r.essence in _RESPONSE_TYPES for r in parse_accept(value)):
        raise NotAcceptable("the STOW-RS response is application/dicom+json (XML is not supported)")


async def _store(
    request: Request, services: ServicesDep, settings: SettingsDep, study_uid: str | None
) -> Response:
    _check_accept(request.headers.get("accept"))
    content_type = MediaType.parse(request.headers.get("content-type"))
    declared = request.headers.get("content-length")
    limit = settings.limits.max_request_bytes
    if _declares_more(declared, limit):
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    session = services.ingest.session(
        study_uid=study_uid, audit=write_audit(request, services.audit)
    )
    too_large: PayloadTooLarge | None = None
    try:
        if content_type.essence == "multipart/related":
            too_large = await _read_multipart(request, content_type, session, services, limit)
        elif content_type.essence == DICOM and settings.allow_single_part_stow:
            too_large = await _read_single(request, session, services, limit)
        else:
            raise UnsupportedMediaType(
                'expected multipart/related; type="application/dicom"; boundary=...'
            )
        result = await session.finish()
    except ClientDisconnect:
        await session.abort()
        log.info("client went away during STOW")
        return Response(status_code=400)
    except BaseException:
        await session.abort()
        raise
    studies = {o.study_uid for o in result.stored if o.study_uid}
    note(
        request,
        count=len(result.stored),
        study_uid=next(iter(studies)) if len(studies) == 1 else None,
        detail=f"{len(result.stored)} stored, {len(result.failed)} failed",
    )
    base = service_base(request, settings)
    return _response(result, base, too_large)


def _declares_more(content_length: str | None, limit: int) -> bool:
    """Whether a Content-Length says more than ``limit`` bytes (a malformed one says nothing:
    the body is counted as it arrives). Only ASCII digits are a length (``"²".isdigit()``), and
    a number too long for ``int()`` is more than any limit.
    """
    if content_length is None or not content_length.isascii() or not content_length.isdigit():
        return False
    digits = content_length.lstrip("0")
    return len(digits) > 18 or int(digits or "0") > limit


async def _read_multipart(
    request: Request,
    content_type: MediaType,
    session: IngestSession,
    services: ServicesDep,
    limit: int,
) -> PayloadTooLarge | None:
    part_type = MediaType.parse(content_type.params.get("type")).essence
    boundary = content_type.params.get("boundary")
    if not boundary:
        raise UnsupportedMediaType("multipart/related without a boundary parameter")
    if part_type in (DICOM_JSON, "application/dicom+xml"):  # metadata + bulk data (STOW-02)
        return await read_dicom_json_parts(
            request, boundary, session, services, limit, metadata_type=part_type
        )
    if part_type != DICOM:
        raise UnsupportedMediaType(
            'multipart/related must have type="application/dicom" (PS3.18 §10.5.1.4)'
        )
    try:
        async for event in read_multipart(
            request.stream(), boundary, services.ingest.spool, max_bytes=limit
        ):
            if isinstance(event, Part):
                essence = event.media_type.essence
                if essence not in ("", DICOM):
                    event.payload.discard()
                    session.reject_part(
                        InvalidInstance(f"part media type {essence} is not {DICOM}")
                    )
                    continue
                await session.add(event.payload)
            elif isinstance(event, PartFailed):
                session.reject_part(event.error)
            elif isinstance(event, FramingError):
                session.reject_part(InvalidInstance(event.message))
    except PayloadTooLarge as exc:
        return exc
    return None


async def _read_single(
    request: Request, session: IngestSession, services: ServicesDep, limit: int
) -> PayloadTooLarge | None:
    spool = services.ingest.spool()
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                spool.discard()
                return PayloadTooLarge(f"request body larger than {limit} bytes")
            spool.write(chunk)
    except BaseException:
        spool.discard()
        raise
    await session.add(spool.finish())
    return None


def _response(result: IngestResult, base: str, too_large: PayloadTooLarge | None) -> Response:
    stored = result.stored
    failed = result.failed
    if not result.outcomes:
        if too_large is not None:
            return problem(413, too_large.message)
        return problem(400, "the request holds no instance")
    body: dict[str, Any] = {}
    studies = {o.study_uid for o in stored if o.study_uid}
    study_location = study_url(base, next(iter(studies))) if len(studies) == 1 else None
    body["00081190"] = {"vr": "UR", "Value": [study_location]} if study_location else {"vr": "UR"}
    named = [o for o in failed if o.identified]
    other = [o for o in failed if not o.identified]
    if named:
        body["00081198"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [o.sop_class_uid]},
                    "00081155": {"vr": "UI", "Value": [o.sop_uid]},
                    "00081197": {
                        "vr": "US",
                        "Value": [int(o.failure or Status.PROCESSING_FAILURE)],
                    },
                }
                for o in named
            ],
        }
    if stored:
        items = []
        for o in stored:
            assert o.study_uid
            assert o.series_uid
            assert o.sop_uid
            item: dict[str, Any] = {
                "00081150": {"vr": "UI", "Value": [o.sop_class_uid]},
                "00081155": {"vr": "UI", "Value": [o.sop_uid]},
                "00081190": {
                    "vr": "UR",
                    "Value": [instance_url(base, o.study_uid, o.series_uid, o.sop_uid)],
                },
            }
            if o.warning is not None:
                item["00081196"] = {"vr": "US", "Value": [int(o.warning)]}
            items.append(item)
        body["00081199"] = {"vr": "SQ", "Value": items}
    if other:
        body["0008119A"] = {
            "vr": "SQ",
            "Value": [
                {"00081197": {"vr": "US", "Value": [int(o.failure or Status.PROCESSING_FAILURE)]}}
                for o in other
            ],
        }
    if too_large is not None:
        status = 413
    elif not stored:
        status = 400 if all(o.syntax_failure for o in failed) else 409
    elif failed or any(o.warning is not None for o in stored):
        status = 202
    else:
        status = 200
    headers = {}
    if study_location is not None:
        headers["Content-Location"] = study_location
        headers["Location"] = study_location
    for o in failed:
        log.info("STOW failure %s: %s", hex(int(o.failure or 0)), o.message)
    response = Response(
        orjson.dumps(body, option=orjson.OPT_SORT_KEYS),
        status_code=status,
        media_type=DICOM_JSON,
        headers=headers,
    )
    for warning in reason_warnings(result):
        response.headers.append("Warning", warning)
    return response


#: the most Warning header fields one STOW response carries (one per failed or warned
#: instance, then a count of the rest): header sections have size limits
MAX_REASON_WARNINGS = 20


def _quoted(text: str) -> str:
    r"""An RFC 9110 quoted-string of printable ASCII (``"`` and ``\`` escaped)."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


def reason_warnings(result: IngestResult) -> list[str]:
    r"""``Warning`` header values saying why each instance failed or was stored with a warning
    (STOW-14 gives only the code): ``299 lightbox "<SOP Instance UID or part N>: <status>
    <reason>"``, in part order, at most :data:`MAX_REASON_WARNINGS` and a count of the rest.

    The Store Instances Response Module (PS3.18 Table 10.5.3-1) has FailureReason (0008,1197)
    and WarningReason (0008,1196), codes without text; PS3.18 §10.5.3 lets the response carry
    Warning header fields, so the text goes there (RFC 7234 §5.5 form, as WADO-RS's).

    >>> from app.services.ingest import InstanceOutcome
    >>> r = IngestResult([InstanceOutcome("1.2", "1.2.3", failure=Status.CANNOT_UNDERSTAND,
    ...                   message='no "File Meta"'), InstanceOutcome(None, None,
    ...                   failure=Status.PROCESSING_FAILURE, message="framing")])
    >>> for warning in reason_warnings(r):
    ...     print(warning)
    299 lightbox "1.2.3: failure 0xC000 no \"File Meta\""
    299 lightbox "part 2: failure 0x0110 framing"
    """
    texts = []
    for number, o in enumerate(result.outcomes, start=1):
        code = o.failure if not o.stored else o.warning
        if code is None:
            continue
        kind = "failure" if not o.stored else "warning"
        text = f"{o.sop_uid or f'part {number}'}: {kind} 0x{int(code):04X}"
        if o.message:
            text += f" {o.message}"
        texts.append(text)
    warnings = [f"299 lightbox {_quoted(t)}" for t in texts[:MAX_REASON_WARNINGS]]
    if len(texts) > MAX_REASON_WARNINGS:
        rest = len(texts) - MAX_REASON_WARNINGS
        warnings.append(f'299 lightbox "and {rest} more (the server log has every reason)"')
    return warnings

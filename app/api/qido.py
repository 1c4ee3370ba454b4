"""QIDO-RS search: the six resources of PS3.18 Table 10.6.1-2 (§10.6, §8.3.4, RES-02).

``/studies``, ``/studies/{study}/series``, ``/series``, ``/studies/{study}/instances``,
``/studies/{study}/series/{series}/instances`` and ``/instances``. Each route parses its query
parameters into a :class:`~app.dicom.query.Query` (400 naming the parameter when malformed, 400
for a malformed path UID), makes one query-service call and renders the page as one
``application/dicom+json`` array (QIDO-19) or, when preferred, ``multipart/related;
type="application/dicom+xml"`` (QIDO-20, :mod:`app.api.xml`), or 204 with an empty body when
nothing matches
(``LIGHTBOX_QIDO_EMPTY_STATUS=200`` answers ``200 []`` instead, as Orthanc does).

A path UID is a match key of the search (§10.6.1.2): an unknown study or series in the path
is a search with no match, answered like any other (204, §8.3.4.4.1: no matches, empty
payload), not a 404; PS3.18 defines no "parent not found" for the Search transaction.

``Warning: 299`` headers tell about ignored attributes, unsupported matching options and the
results left for a later page (QIDO-02/14/18); ``X-Total-Count`` gives the number of matches
when it was counted exactly (up to ``LIGHTBOX_QIDO_COUNT_LIMIT``; beyond, the header is left out
and the Warning says "more than").
Query values are percent-decoded exactly once and then read as UTF-8 (CS-03, issue point 4) by
:func:`query_items`, from the raw query bytes: a value a client sent unescaped (``^``, ``*``,
``,``, ``/``, even raw UTF-8) and one it percent-encoded give the same text, and bytes that are not
UTF-8 are a 400 naming the parameter (Starlette's own parser would read raw UTF-8 as Latin-1 and
replace invalid sequences silently).
"""

from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

import orjson
from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from app.api.deps import RestrictionDep, ServicesDep, SettingsDep
from app.api.negotiation import parse_accept
from app.api.urls import service_base
from app.api.xml import MULTIPART_XML, wants_xml, xml_response
from app.dicom.query import Resource, StudyRestriction, parse_qido
from app.dicom.uids import validate_uid
from app.errors import BadRequest, NotAcceptable

router = APIRouter(tags=["qido"])

DICOM_JSON = "application/dicom+json"
_ACCEPTED = {DICOM_JSON, "application/json", "application/*", "*/*"}

StudyUID = Annotated[str, Path(description="Study Instance UID")]
SeriesUID = Annotated[str, Path(description="Series Instance UID")]


def _responses(what: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": f"matching {what}", "content": {DICOM_JSON: {}, MULTIPART_XML: {}}},
        204: {"description": f"no {what} match"},
        400: {"description": "malformed query parameter or path UID"},
        406: {"description": "neither DICOM JSON nor multipart/related DICOM XML is acceptable"},
    }


def query_items(raw: bytes) -> list[tuple[str, str]]:
    """The ``name=value`` pairs of a raw query string, each decoded once (``+`` is a space).

    >>> query_items(b"PatientName=M%C3%BCller%5EJ*&StudyDate=&x")
    [('PatientName', 'Müller^J*'), ('StudyDate', ''), ('x', '')]
    >>> query_items("PatientName=Müller^J%2C%252C".encode())
    [('PatientName', 'Müller^J,%2C')]
    >>> query_items(b"PatientName=%FF")
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: PatientName: value is not percent-encoded UTF-8
    """
    items: list[tuple[str, str]] = []
    for field in raw.split(b"&"):
        if not field:
            continue
        name_raw, _, value_raw = field.partition(b"=")
        name = _decode(name_raw, None)
        items.append((name, _decode(value_raw, name)))
    return items


def _decode(raw: bytes, name: str | None) -> str:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        what = "a query parameter name" if name is None else f"{name[:64]}: value"
        raise BadRequest(f"{what} is not percent-encoded UTF-8") from None


def _check_accept(value: str | None) -> None:
    """QIDO-19/20: without a preference for the XML form, DICOM JSON must be acceptable (406)."""
    if value is None or not value.strip():
        return
    if not any(r.q > 0 and r.essence in _ACCEPTED for r in parse_accept(value)):
        raise NotAcceptable(
            "QIDO-RS results are application/dicom+json or multipart/related DICOM XML"
        )


async def _search(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    restrict: StudyRestriction | None,
    resource: Resource,
    study: str | None = None,
    series: str | None = None,
) -> Response:
    xml = wants_xml(request.headers.get("accept"))  # QIDO-20: the XML form when preferred
    if not xml:
        _check_accept(request.headers.get("accept"))
    query = parse_qido(
        query_items(request.scope.get("query_string", b"")),
        resource=resource,
        study_uid=None if study is None else validate_uid(study, "StudyInstanceUID"),
        series_uid=None if series is None else validate_uid(series, "SeriesInstanceUID"),
    )
    base = service_base(request, settings)
    items, total, exact = await services.query.search(query, base, restrict=restrict)
    warnings = [f"299 {base}: {text}" for text in query.warnings]
    remaining = total - query.offset - len(items)
    if items and remaining > 0:
        more = "" if exact else "more than "
        warnings.append(
            f"299 {base}: There are {more}{remaining} additional results that can be requested"
        )
    if not items and settings.qido_empty_status == 204:
        response = Response(status_code=204)
    elif xml:
        response = xml_response(items)
    else:
        response = Response(orjson.dumps(items, option=orjson.OPT_SORT_KEYS), media_type=DICOM_JSON)
    if exact:
        response.headers.append("X-Total-Count", str(total))
    for warning in warnings:
        response.headers.append("Warning", warning)
    return response


@router.get(
    "/studies",
    operation_id="qido-search_studies",
    summary="Search for studies (QIDO-RS)",
    responses=_responses("studies"),
    response_class=Response,
)
async def search_studies(
    request: Request, services: ServicesDep, settings: SettingsDep, restrict: RestrictionDep
) -> Response:
    return await _search(request, services, settings, restrict, Resource.STUDIES)


@router.get(
    "/studies/{study}/series",
    operation_id="qido-search_study_series",
    summary="Search for the series of a study (QIDO-RS)",
    responses=_responses("series"),
    response_class=Response,
)
async def search_study_series(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    restrict: RestrictionDep,
    study: StudyUID,
) -> Response:
    return await _search(request, services, settings, restrict, Resource.STUDY_SERIES, study)


@router.get(
    "/series",
    operation_id="qido-search_series",
    summary="Search for series (QIDO-RS)",
    responses=_responses("series"),
    response_class=Response,
)
async def search_series(
    request: Request, services: ServicesDep, settings: SettingsDep, restrict: RestrictionDep
) -> Response:
    return await _search(request, services, settings, restrict, Resource.SERIES)


@router.get(
    "/studies/{study}/instances",
    operation_id="qido-search_study_instances",
    summary="Search for the instances of a study (QIDO-RS)",
    responses=_responses("instances"),
    response_class=Response,
)
async def search_study_instances(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    restrict: RestrictionDep,
    study: StudyUID,
) -> Response:
    return await _search(request, services, settings, restrict, Resource.STUDY_INSTANCES, study)


@router.get(
    "/studies/{study}/series/{series}/instances",
    operation_id="qido-search_series_instances",
    summary="Search for the instances of a series (QIDO-RS)",
    responses=_responses("instances"),
    response_class=Response,
)
async def search_series_instances(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    restrict: RestrictionDep,
    study: StudyUID,
    series: SeriesUID,
) -> Response:
    return await _search(
        request, services, settings, restrict, Resource.SERIES_INSTANCES, study, series
    )


@router.get(
    "/instances",
    operation_id="qido-search_instances",
    summary="Search for instances (QIDO-RS)",
    responses=_responses("instances"),
    response_class=Response,
)
async def search_instances(
    request: Request, services: ServicesDep, settings: SettingsDep, restrict: RestrictionDep
) -> Response:
    return await _search(request, services, settings, restrict, Resource.INSTANCES)

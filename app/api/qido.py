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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_to_bytes

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app.api.deps import RestrictionDep, ServicesDep, SettingsDep
from app.api.negotiation import parse_accept
from app.api.targets import PATHS, described_targets
from app.api.urls import service_base
from app.api.xml import MULTIPART_XML, wants_xml, xml_response
from app.dicom.query import Resource, StudyRestriction, parse_qido
from app.dicom.target import Level, Target
from app.errors import BadRequest, NotAcceptable

router = APIRouter(tags=["qido"])

DICOM_JSON = "application/dicom+json"
_ACCEPTED = {DICOM_JSON, "application/json", "application/*", "*/*"}


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


async def _representation(request: Request) -> bool:
    """Whether the XML form is asked for (QIDO-20), or 406 when neither form is acceptable;
    checked before the path's UIDs."""
    xml = wants_xml(request.headers.get("accept"))  # QIDO-20: the XML form when preferred
    if not xml:
        _check_accept(request.headers.get("accept"))
    return xml


async def _search(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    restrict: StudyRestriction | None,
    resource: Resource,
    xml: bool,
    target: Target | None,
) -> Response:
    query = parse_qido(
        query_items(request.scope.get("query_string", b"")),
        resource=resource,
        study_uid=None if target is None else target.study_uid,
        series_uid=None if target is None else target.series_uid,
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


def _search_endpoint(resource: Resource, level: Level | None) -> Callable[..., Any]:
    if level is None:

        async def search(
            request: Request,
            services: ServicesDep,
            settings: SettingsDep,
            restrict: RestrictionDep,
            xml: bool = Depends(_representation),
        ) -> Response:
            return await _search(request, services, settings, restrict, resource, xml, None)

        return search

    async def search_under(
        request: Request,
        services: ServicesDep,
        settings: SettingsDep,
        restrict: RestrictionDep,
        xml: bool = Depends(_representation),
        target: Target = described_targets[level],
    ) -> Response:
        return await _search(request, services, settings, restrict, resource, xml, target)

    return search_under


@dataclass(frozen=True, slots=True)
class _Search:
    resource: Resource
    level: Level | None  # of the target the path names; None: the service root
    suffix: str  # the path below the target
    operation_id: str
    summary: str
    what: str  # what is searched for, in the documented responses


#: the six resources of Table 10.6.1-2, in the order they are matched
_SEARCHES: Final = (
    _Search(Resource.STUDIES, None, "/studies", "studies", "Search for studies", "studies"),
    _Search(
        Resource.STUDY_SERIES,
        Level.STUDY,
        "/series",
        "study_series",
        "Search for the series of a study",
        "series",
    ),
    _Search(Resource.SERIES, None, "/series", "series", "Search for series", "series"),
    _Search(
        Resource.STUDY_INSTANCES,
        Level.STUDY,
        "/instances",
        "study_instances",
        "Search for the instances of a study",
        "instances",
    ),
    _Search(
        Resource.SERIES_INSTANCES,
        Level.SERIES,
        "/instances",
        "series_instances",
        "Search for the instances of a series",
        "instances",
    ),
    _Search(
        Resource.INSTANCES, None, "/instances", "instances", "Search for instances", "instances"
    ),
)

for _row in _SEARCHES:
    router.add_api_route(
        _row.suffix if _row.level is None else PATHS[_row.level] + _row.suffix,
        _search_endpoint(_row.resource, _row.level),
        methods=["GET"],
        operation_id=f"qido-search_{_row.operation_id}",
        summary=f"{_row.summary} (QIDO-RS)",
        responses=_responses(_row.what),
        response_class=Response,
    )

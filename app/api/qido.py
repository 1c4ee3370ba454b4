"""QIDO-RS search: ``GET {root}/studies`` (PS3.18 §10.6, §8.3.4).

The query parameters become a :class:`~app.dicom.query.Query` (400 naming the parameter when
malformed), the query service answers one page, and the page goes out as one
``application/dicom+json`` array (QIDO-19), or 204 with an empty body when nothing matches.
``Warning: 299`` headers tell about ignored attributes, unsupported matching options and the
results left for a later page (QIDO-02/14/18); ``X-Total-Count`` gives the number of matches.
"""

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.deps import RestrictionDep, ServicesDep, SettingsDep
from app.api.negotiation import parse_accept
from app.api.urls import service_base
from app.dicom.attributes import Level
from app.dicom.query import parse_qido
from app.errors import NotAcceptable

router = APIRouter(tags=["qido"])

DICOM_JSON = "application/dicom+json"
_ACCEPTED = {DICOM_JSON, "application/json", "application/*", "*/*"}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "matching studies", "content": {DICOM_JSON: {}}},
    204: {"description": "no study matches"},
    400: {"description": "malformed query parameter"},
    406: {"description": "only application/dicom+json can be produced"},
}


def _check_accept(value: str | None) -> None:
    """QIDO-19/20: DICOM JSON only; XML (multipart/related) is not built yet, so 406."""
    if value is None or not value.strip():
        return
    if not any(r.q > 0 and r.essence in _ACCEPTED for r in parse_accept(value)):
        raise NotAcceptable("QIDO-RS results are application/dicom+json (XML is not supported)")


@router.get(
    "/studies",
    operation_id="qido-search_studies",
    summary="Search for studies (QIDO-RS)",
    responses=_RESPONSES,
    response_class=Response,
)
async def search_studies(
    request: Request, services: ServicesDep, settings: SettingsDep, restrict: RestrictionDep
) -> Response:
    _check_accept(request.headers.get("accept"))
    query = parse_qido(request.query_params.multi_items(), level=Level.STUDY)
    base = service_base(request, settings)
    items, total = await services.query.search_studies(query, base, restrict=restrict)
    warnings = [f"299 {base}: {text}" for text in query.warnings]
    remaining = total - query.offset - len(items)
    if items and remaining > 0:
        warnings.append(
            f"299 {base}: There are {remaining} additional results that can be requested"
        )
    headers = [("X-Total-Count", str(total))] + [("Warning", w) for w in warnings]
    if not items:
        response = Response(status_code=204)
    else:
        response = Response(orjson.dumps(items, option=orjson.OPT_SORT_KEYS), media_type=DICOM_JSON)
    for name, value in headers:
        response.headers.append(name, value)
    return response

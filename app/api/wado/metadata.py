"""WADO-RS metadata (PS3.18 §10.4.1.1.2; RES-04, META-01/02/04, GEN-08).

``.../metadata`` at each level returns the stored DICOM JSON of the instances as one
``application/dicom+json`` array in WADO-01 order, spliced as bytes with the service base URL put
in front of each BulkDataURI (:mod:`app.services.retrieve.metadata`); an ``ETag`` allows
``If-None-Match`` (304); the body is gzipped when ``Accept-Encoding`` allows it (GEN-08). A
client preferring ``multipart/related; type="application/dicom+xml"`` gets the same content as
PS3.19 XML (QIDO-20, :mod:`app.api.xml`).
"""

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from app.api.deps import ServicesDep, SettingsDep
from app.api.negotiation import DICOM_JSON, negotiate_json
from app.api.targets import LevelRoute, add_level_routes
from app.api.urls import service_base
from app.api.wado.common import ERRORS, AcceptParam, accept_header, router
from app.api.xml import MULTIPART_XML, wants_xml, xml_response
from app.dicom.target import Level, Target
from app.services.retrieve import MetadataRequest

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "a DICOM JSON array, one object per instance, in WADO-01 order",
        "content": {
            DICOM_JSON: {"schema": {"type": "array", "items": {"type": "object"}}},
            MULTIPART_XML: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    304: {"description": "not modified (If-None-Match matches the ETag)"},
    **ERRORS,
}


def _endpoint(target_dependency: Any) -> Callable[..., Any]:
    async def retrieve_metadata(
        request: Request,
        services: ServicesDep,
        settings: SettingsDep,
        target: Target = target_dependency,
        accept: AcceptParam = None,
    ) -> Response:
        header = accept_header(request)
        xml = wants_xml(header, accept or [])  # QIDO-20 / PS3.19: the XML form when preferred
        media_type = (
            None if xml else negotiate_json(accept or [], header, strict=settings.strict_accept)
        )
        base = service_base(request, settings)
        current = entity_tags(request.headers.get("if-none-match"))
        if xml:
            document = await services.retrieve.metadata(MetadataRequest(target, base))
            etag = document.etag[:-1] + '-xml"'
            if "*" in current or etag in current:
                return Response(status_code=304, headers={"ETag": etag})
            assert document.body is not None  # nothing was said current
            return xml_response(orjson.loads(document.body), headers={"ETag": etag})
        gzipped = accepts_gzip(request.headers.get("accept-encoding"))
        document = await services.retrieve.metadata(
            MetadataRequest(target, base, gzipped=gzipped, current=current)
        )
        headers = {"Vary": "Accept-Encoding", "ETag": document.etag}
        if document.body is None:
            return Response(status_code=304, headers=headers)
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return Response(document.body, media_type=media_type, headers=headers)

    return retrieve_metadata


def entity_tags(if_none_match: str | None) -> frozenset[str]:
    """The entity tags of an If-None-Match value, weak ones as strong (the weak comparison of
    RFC 9110 §13.1.2: the plain and the gzip representation are the same content).

    >>> sorted(entity_tags('W/"a", "b"')), entity_tags(None)
    (['"a"', '"b"'], frozenset())
    """
    if if_none_match is None:
        return frozenset()
    return frozenset(tag.strip().removeprefix("W/") for tag in if_none_match.split(","))


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether Accept-Encoding allows gzip (RFC 9110 §12.5.3), explicitly or by ``*``.

    >>> accepts_gzip("gzip, deflate"), accepts_gzip("gzip;q=0"), accepts_gzip("*")
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
    _endpoint,
    responses=_RESPONSES,
)

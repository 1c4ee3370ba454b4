"""The XML representation of search results and metadata (QIDO-20, PS3.18 §8.7.4, PS3.19).

``multipart/related; type="application/dicom+xml"`` holds one Native DICOM Model document per
object (:mod:`app.dicom.dicomxml`), converted from the same DICOM JSON the JSON form sends. Routes
call :func:`wants_xml` on the request's Accept values and, when it says so, answer with
:func:`xml_response`; the JSON form stays the default.
"""

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Final

from starlette.responses import StreamingResponse

from app.api.multipart_writer import (
    OutgoingPart,
    multipart_content_type,
    new_boundary,
    write_multipart,
)
from app.api.negotiation import parse_accept
from app.dicom.dicomxml import MEDIA_TYPE, to_xml

__all__ = ["MULTIPART_XML", "wants_xml", "xml_response"]

MULTIPART_XML: Final = f'multipart/related; type="{MEDIA_TYPE}"'
_JSON: Final = frozenset({"application/dicom+json", "application/json"})


def wants_xml(header: str | None, query: Sequence[str] = ()) -> bool:
    """Whether the client prefers ``multipart/related; type="application/dicom+xml"``.

    The ``accept`` query parameter takes precedence over the header (PS3.18 §8.3.3.1). XML is
    chosen when it is named with a weight above the JSON form's, or as high as a JSON form that
    only a wildcard admits.

    >>> wants_xml('multipart/related; type="application/dicom+xml"')
    True
    >>> wants_xml('multipart/related; type="application/dicom+xml"; q=0.5, application/dicom+json')
    False
    >>> wants_xml('*/*'), wants_xml(None)
    (False, False)
    """
    value = ", ".join(query) if query else header
    if not value:
        return False
    xml_q = 0.0
    json_q, json_specific = 0.0, False
    for r in parse_accept(value):
        if r.essence == "multipart/related" and r.params.get("type", "").lower() == MEDIA_TYPE:
            xml_q = max(xml_q, r.q)
        elif r.essence in _JSON and (not json_specific or r.q > json_q):
            json_q, json_specific = r.q, True
        elif r.essence in ("application/*", "*/*") and not json_specific:
            json_q = max(json_q, r.q)
    return xml_q > 0 and (xml_q > json_q or (xml_q == json_q and not json_specific))


def xml_response(
    objects: Iterable[Mapping[str, Any]],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> StreamingResponse:
    """One Native DICOM Model part per object, converted while the response is sent."""
    boundary = new_boundary()
    return StreamingResponse(
        write_multipart(_parts(objects), boundary),
        status_code=status_code,
        media_type=multipart_content_type(MEDIA_TYPE, boundary, transfer_syntax=None),
        headers=dict(headers or {}),
    )


async def _parts(objects: Iterable[Mapping[str, Any]]) -> AsyncIterator[OutgoingPart]:
    for obj in objects:
        document = to_xml(obj)
        yield OutgoingPart(
            content_type=f"{MEDIA_TYPE}; charset=utf-8",
            chunks=_once(document),
            content_length=len(document),
        )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data

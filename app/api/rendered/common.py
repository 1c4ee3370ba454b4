"""What the rendered and thumbnail routes share: the router, ``Accept`` for the Rendered
category (PS3.18 §8.7.4) and the writing of a rendering."""

from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from app.api.multipart_writer import (
    OutgoingPart,
    multipart_content_type,
    new_boundary,
    write_multipart,
)
from app.api.negotiation import MULTIPART_RELATED, MediaRange, parse_accept, parse_media_range
from app.dicom.render import IMAGE_TYPES
from app.services.render import Choice, Rendering, choose_rendered
from app.services.retrieve import Acceptable, Accepted, Part

__all__ = [
    "ALIASES",
    "BINARY",
    "IMAGE_CONTENT",
    "AcceptParam",
    "accept_header",
    "negotiate_rendered",
    "rendered_accepted",
    "router",
    "write_rendering",
]

router = APIRouter(tags=["rendered"])

#: accepted spellings of rendered types (``image/jpg`` as Orthanc accepts it, URI-02)
ALIASES = {"image/jpg": "image/jpeg"}

BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
IMAGE_CONTENT = dict.fromkeys(IMAGE_TYPES, BINARY)

AcceptParam = Annotated[
    list[str] | None,
    Query(description="media types, as in Accept but without wildcards (PS3.18 §8.3.3.1)"),
]


def _rendered_acceptable(r: MediaRange) -> Acceptable | None:
    """What ``r`` asks for: a type alone, or as parts of ``multipart/related; type=X``. A
    ``transfer-syntax`` parameter is not allowed on rendered types (REND-01): dropped."""
    if r.q <= 0 or "transfer-syntax" in r.params:
        return None
    if r.essence == MULTIPART_RELATED:
        inner = parse_media_range(r.params.get("type", "*/*"))
        if inner is None:
            return None
        return Acceptable(ALIASES.get(inner.essence, inner.essence), q=r.q)
    return Acceptable(ALIASES.get(r.essence, r.essence), q=r.q, whole=True)


def rendered_accepted(query: Sequence[str], header: str | None) -> Accepted:
    """What the client accepts of the Rendered category (PS3.18 §8.7.4): the ``accept`` query
    parameter first (no wildcards), then the Accept header (absent: ``*/*``)."""
    stages: list[list[MediaRange]] = []
    if query:
        stages.append([r for r in parse_accept(",".join(query)) if not r.is_wildcard])
    stages.append(parse_accept("*/*" if header is None else header))
    return Accepted(
        tuple(
            tuple(a for r in stage if (a := _rendered_acceptable(r)) is not None)
            for stage in stages
        )
    )


def negotiate_rendered(
    query: Sequence[str], header: str | None, offered: Sequence[str], *, multipart: bool = True
) -> Choice:
    """Choose among ``offered`` (the default first) for the Rendered category (PS3.18 §8.7.4).

    Highest ``q`` wins, ties in the client's order. ``multipart/related; type=X`` selects X in
    a multipart body when ``multipart`` allows it. 406 when nothing fits.

    >>> negotiate_rendered([], "image/png;q=0.5, image/gif", IMAGE_TYPES)
    Choice(media_type='image/gif', multipart=False)
    >>> negotiate_rendered([], None, IMAGE_TYPES)
    Choice(media_type='image/jpeg', multipart=False)
    >>> negotiate_rendered([], 'multipart/related; type="image/png"', IMAGE_TYPES)
    Choice(media_type='image/png', multipart=True)
    """
    return choose_rendered(rendered_accepted(query, header), offered, multipart=multipart)


def accept_header(request: Request) -> str | None:
    return ", ".join(request.headers.getlist("accept")) or None


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def write_rendering(
    rendering_: Rendering, base: str, extra: dict[str, str], *, location: str | None = None
) -> Response:
    """A rendering as HTTP: 304 for a current copy, one image alone (with its Content-Location
    unless ``location`` is ``""``), or ``multipart/related``; ETag and ``Cache-Control:
    private`` always (REND-09)."""
    headers = {"ETag": rendering_.etag, "Cache-Control": "private", **extra}
    if rendering_.parts is None:
        return Response(status_code=304, headers=headers)
    media_type = rendering_.media_type
    if not rendering_.multipart:
        part = await anext(rendering_.parts)
        data = b"".join([chunk async for chunk in part.chunks])
        where = f"{base}/{part.head.instance}{part.head.location}" if location is None else location
        if where:
            headers["Content-Location"] = where
        return Response(data, media_type=media_type, headers=headers)
    boundary = new_boundary()
    return StreamingResponse(
        write_multipart(_outgoing(rendering_.parts, base), boundary),
        media_type=multipart_content_type(media_type, boundary, transfer_syntax=None),
        headers=headers,
    )


async def _outgoing(parts: AsyncIterator[Part], base: str) -> AsyncIterator[OutgoingPart]:
    async for part in parts:
        head = part.head
        data = b"".join([chunk async for chunk in part.chunks])
        yield OutgoingPart(
            head.media_type, _once(data), f"{base}/{head.instance}{head.location}", len(data)
        )

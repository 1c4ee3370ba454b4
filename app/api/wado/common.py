"""What the WADO-RS routes share: the router, the ``accept`` parameter, and the writing of a
retrieve's parts as ``multipart/related`` (PS3.18 §8.6.1.2, NEG-10).

The retrieve service answers with parts and their media types
(:class:`~app.services.retrieve.Answer`); here they become HTTP: each part's Content-Location
is the URL of the instance it comes from (GEN-01), and an answer that omitted instances is 206
with a ``Warning`` saying which (WADO-03).
"""

from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.api.multipart_writer import OutgoingPart
from app.services.retrieve import Answer, Part, PartHead

__all__ = [
    "BINARY",
    "ERRORS",
    "AcceptParam",
    "accept_header",
    "location",
    "outgoing",
    "outgoing_parts",
    "router",
    "warning",
]

router = APIRouter(tags=["wado"])

BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed UID in the path (GEN-02)"},
    404: {"description": "no such study, series or instance"},
    406: {"description": "no acceptable representation (Accept, transfer-syntax)"},
}

AcceptParam = Annotated[
    list[str] | None,
    Query(
        description="media types, as in the Accept header but without wildcards; takes "
        "precedence over the header (PS3.18 §8.3.3.1)",
    ),
]


def accept_header(request: Request) -> str | None:
    """All Accept header lines as one value; None when the request has none (NEG-04)."""
    return ", ".join(request.headers.getlist("accept")) or None


def location(base: str, head: PartHead) -> str:
    """The URL of what a part holds: its instance, and the resource below it (GEN-01)."""
    return f"{base}/{head.instance}{head.location}"


def outgoing(part: Part, base: str) -> OutgoingPart:
    """A part as the multipart writer writes it."""
    head = part.head
    return OutgoingPart(
        content_type=head.media_type,
        chunks=part.chunks,
        content_location=location(base, head),
        content_length=head.length,
    )


async def outgoing_parts(answer: Answer, base: str) -> AsyncGenerator[OutgoingPart, None]:
    """The answer's parts as the multipart writer writes them, read as they are written (and
    released when the writing stops early: the client went away)."""
    try:
        async for part in answer.parts:
            yield outgoing(part, base)
    finally:
        await answer.aclose()


def warning(answer: Answer) -> dict[str, str]:
    """A ``Warning`` about what the answer left out (WADO-03), if it left anything out."""
    return {} if answer.omission is None else {"Warning": f'299 lightbox "{answer.omission}"'}

"""What the WADO-RS routes share: the router, the ``accept`` parameter, and the writing of a
retrieve's parts as ``multipart/related`` (PS3.18 §8.6.1.2, NEG-10).

The retrieve service answers with parts and their media types
(:class:`~app.services.retrieve.Answer`); here they become HTTP: each part's Content-Location
is the URL of the instance it comes from (GEN-01), and an answer that omitted instances is 206
with a ``Warning`` saying which (WADO-03).
"""

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.api.deps import ServicesDep, SettingsDep
from app.api.multipart_writer import OutgoingPart
from app.api.urls import service_base
from app.dicom.target import Target
from app.services.container import Services
from app.services.retrieve import Accepted, Answer, Part, PartHead

__all__ = [
    "BINARY",
    "ERRORS",
    "AcceptParam",
    "accept_header",
    "location",
    "outgoing",
    "outgoing_parts",
    "retrieve_endpoint",
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


#: an Accept parser of :mod:`app.api.negotiation` (``dicom_accepted``, ``frames_accepted`` ...)
Negotiate = Callable[..., Accepted]
#: one retrieve use case: the service's answer for a target and what the client accepts
UseCase = Callable[[Services, Target, Accepted], Awaitable[Answer]]
#: how an answer is written: the answer and the service base URL
Write = Callable[[Answer, str], Awaitable[Response]]


def retrieve_endpoint(
    name: str, negotiate: Negotiate, use_case: UseCase, write: Write
) -> Callable[[Any], Callable[..., Any]]:
    """The endpoint factory of a per-level retrieve route (for
    :func:`~app.api.targets.add_level_routes`): parse Accept, make the one service call, write.
    """

    def endpoint(target_dependency: Any) -> Callable[..., Any]:
        async def retrieve(
            request: Request,
            services: ServicesDep,
            settings: SettingsDep,
            target: Target = target_dependency,
            accept: AcceptParam = None,
        ) -> Response:
            accepted = negotiate(
                accept or [], accept_header(request), strict=settings.strict_accept
            )
            answer = await use_case(services, target, accepted)
            return await write(answer, service_base(request, settings))

        retrieve.__name__ = retrieve.__qualname__ = name
        return retrieve

    return endpoint

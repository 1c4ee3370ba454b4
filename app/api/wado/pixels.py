"""WADO-RS frames and pixel data (PS3.18 §10.4.1.1.4-6; RES-08, FRM-01..07).

Frames (FRM-01..06): ``.../instances/{i}/frames/{list}`` returns one part per frame, in the
order asked, read as byte ranges of the stored blob: as stored (native ones little endian,
FRM-03; compressed ones labelled with their Table 8.7.3-5 type), or decoded to native pixels when
uncompressed frames are asked for (FRM-05), see :func:`app.services.retrieve.choice.
choose_frames`. One frame asked for with a bare media type gets a single-part body (NEG-11).

Pixel data (FRM-07): ``/pixeldata`` on an instance returns its frames, one part each; on a series
or study, every frame of every instance with pixel data, in WADO-01 order; instances whose frames
cannot be sent as asked are left out (206 with a ``Warning``, WADO-03).
"""

from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.responses import Response, StreamingResponse

from app.api.multipart_writer import (
    OutgoingPart,
    multipart_body,
    multipart_content_type,
    new_boundary,
    write_multipart,
)
from app.api.negotiation import frames_accepted
from app.api.targets import LevelRoute, add_level_routes
from app.api.wado.common import (
    BINARY,
    outgoing_parts,
    retrieve_endpoint,
    router,
    warning,
)
from app.dicom.target import Level, Target
from app.services.container import Services
from app.services.retrieve import FRAME_MEDIA_TYPES, OCTET_STREAM, Accepted, Answer, PixelsRequest

#: frame responses up to about this size are sent whole, with a Content-Length (the parts held
#: in memory, plus the one that crossed the line); larger ones are streamed part by part
BUFFERED_FRAME_BYTES = 4 << 20

_CONTENT = {
    **{
        f'multipart/related; type="{media}"': BINARY
        for media in sorted({OCTET_STREAM, *FRAME_MEDIA_TYPES.values()})
    },
    OCTET_STREAM: BINARY,
}


def _responses(what: str, *, partial: bool) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {
        200: {"description": what, "content": _CONTENT},
        400: {"description": "malformed UID or frame list (FRM-01)"},
        404: {"description": "no such study, series, instance or frame, or no pixel data"},
        406: {
            "description": "no acceptable representation: a type or syntax we would have to "
            "encode into, video syntaxes (FRM-06), undecodable frames"
        },
    }
    if partial:
        out[206] = {
            "description": "the instances whose frames cannot be sent as asked are left out; a "
            "Warning header says how many (WADO-03)",
            "content": _CONTENT,
        }
    return out


async def _pixels(services: Services, target: Target, accepted: Accepted) -> Answer:
    return await services.retrieve.pixels(PixelsRequest(target, accepted))


async def write_frames(answer: Answer, base: str) -> Response:
    """The frames of ``answer``: one alone (NEG-11), else multipart/related; the first frame was
    read (and decoded) before the status was decided (C5)."""
    parts = outgoing_parts(answer, base)
    first = await anext(parts)
    if answer.whole:
        await parts.aclose()
        data = b"".join([chunk async for chunk in first.chunks])
        return Response(
            data,
            media_type=first.content_type,
            headers={"Content-Location": first.content_location or ""},
        )
    status, headers = 206 if answer.omission else 200, warning(answer)
    boundary = new_boundary()
    media_type = multipart_content_type(
        answer.media_type, boundary, transfer_syntax=answer.transfer_syntax
    )
    # frames are read whole, so a response of a few small frames (a viewer's usual request:
    # one frame) is sent whole too, with a Content-Length: no streaming machinery per request
    held = [first]
    size = first.content_length or 0
    while size <= BUFFERED_FRAME_BYTES:
        part = await anext(parts, None)
        if part is None:
            body = await multipart_body(held, boundary)
            return Response(body, status_code=status, media_type=media_type, headers=headers)
        held.append(part)
        size += part.content_length or 0
    return StreamingResponse(
        write_multipart(_chain(held, parts), boundary),
        status_code=status,
        media_type=media_type,
        headers=headers,
    )


async def _chain(
    held: Sequence[OutgoingPart], rest: AsyncIterator[OutgoingPart]
) -> AsyncIterator[OutgoingPart]:
    for part in held:
        yield part
    async for part in rest:
        yield part


_EVERY_FRAME = _responses("every frame of every instance, WADO-01 order", partial=True)
_ENDPOINT = retrieve_endpoint("retrieve_pixels", frames_accepted, _pixels, write_frames)

add_level_routes(
    router,
    "",
    [
        LevelRoute(
            Level.FRAMES,
            "wado-retrieve_frames",
            "Retrieve frames of an instance (WADO-RS)",
            _responses(
                "one part per frame, in the order asked, each with its transfer-syntax "
                "(FRM-02); one frame asked for as a bare type: a single-part body",
                partial=False,
            ),
        )
    ],
    _ENDPOINT,
)
add_level_routes(
    router,
    "/pixeldata",
    [
        LevelRoute(
            Level.INSTANCE,
            "wado-retrieve_instance_pixeldata",
            "Retrieve the pixel data of an instance, frame by frame (WADO-RS)",
            _responses("one part per frame (FRM-07)", partial=False),
        ),
        LevelRoute(
            Level.SERIES,
            "wado-retrieve_series_pixeldata",
            "Retrieve the pixel data of a series' instances (WADO-RS)",
            _EVERY_FRAME,
        ),
        LevelRoute(
            Level.STUDY,
            "wado-retrieve_study_pixeldata",
            "Retrieve the pixel data of a study's instances (WADO-RS)",
            _EVERY_FRAME,
        ),
    ],
    _ENDPOINT,
)

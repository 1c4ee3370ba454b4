"""Properties of the streaming multipart/related reader (app.api.multipart) and its writer.

Whatever the body and the boundary, the reader yields parts, failed parts and framing errors, or
raises BadRequest / PayloadTooLarge; what the writer writes, the reader reads back, however the
body is cut into chunks.
"""

import asyncio
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from app.api.multipart import (
    FramingError,
    MediaType,
    Part,
    PartFailed,
    read_multipart,
)
from app.api.multipart_writer import OutgoingPart, multipart_body, new_boundary
from app.errors import BadRequest, PayloadTooLarge
from app.services.spool import Spool
from tests.fuzz.outcome import outcome

TMP = Path(tempfile.gettempdir())
#: RFC 2046 §5.1.1 bchars (space only inside)
BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"
boundaries = st.text(alphabet=BCHARS, min_size=1, max_size=70).filter(lambda b: b[-1] != " ")
content_types = st.sampled_from(
    ["application/dicom", "application/octet-stream", 'image/jpeg; transfer-syntax="1.2"', ""]
)


def _spool(max_bytes: int) -> Spool:
    return Spool(memory_limit=1 << 16, max_bytes=max_bytes, tmp_dir=TMP)


async def _chunks(body: bytes, cuts: Sequence[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted({min(c, len(body)) for c in cuts}):
        yield body[start:cut]
        start = cut
    yield body[start:]


async def _read(
    body: bytes, boundary: str, cuts: Sequence[int], *, max_bytes: int, part_bytes: int
) -> list[object]:
    events: list[object] = []
    async for event in read_multipart(
        _chunks(body, cuts), boundary, lambda: _spool(part_bytes), max_bytes=max_bytes
    ):
        if isinstance(event, Part):
            with event.payload.open() as fp:
                events.append((event.headers, fp.read()))
            event.payload.discard()
        else:
            events.append(event)
    return events


@given(
    st.binary(max_size=600) | st.builds(lambda b: b"--b\r\n" + b, st.binary(max_size=300)),
    st.text(max_size=300) | st.just("b"),
    st.lists(st.integers(min_value=0, max_value=700), max_size=6),
    st.integers(min_value=1, max_value=800),
    st.integers(min_value=1, max_value=400),
)
def test_any_body_is_read_or_refused(
    body: bytes, boundary: str, cuts: list[int], max_bytes: int, part_bytes: int
) -> None:
    events = outcome(
        lambda: asyncio.run(
            _read(body, boundary, cuts, max_bytes=max_bytes, part_bytes=part_bytes)
        ),
        BadRequest,
        PayloadTooLarge,
    )
    if isinstance(events, Exception):
        assert events.message if isinstance(events, BadRequest) else len(body) > max_bytes
    else:
        for event in events:
            assert isinstance(event, tuple | PartFailed | FramingError)


@given(
    st.lists(st.tuples(content_types, st.binary(max_size=300)), min_size=1, max_size=4),
    boundaries | st.builds(new_boundary),
    st.lists(st.integers(min_value=0, max_value=1300), max_size=8),
)
def test_what_the_writer_writes_the_reader_reads(
    parts: list[tuple[str, bytes]], boundary: str, cuts: list[int]
) -> None:
    async def payload(data: bytes) -> AsyncIterator[bytes]:
        yield data

    async def run() -> list[object]:
        outgoing = [
            OutgoingPart(content_type=ct, chunks=payload(data), content_length=len(data))
            for ct, data in parts
        ]
        body = await multipart_body(outgoing, boundary)
        return await _read(body, boundary, cuts, max_bytes=1 << 20, part_bytes=1 << 20)

    events = asyncio.run(run())
    assert events == [
        ({"content-type": ct, "content-length": str(len(data))}, data) for ct, data in parts
    ]


@given(st.text(max_size=200))
def test_any_content_type_parses(value: str) -> None:
    media = MediaType.parse(value)
    assert media.essence == media.essence.strip().lower()

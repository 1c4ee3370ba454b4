"""Streaming ``multipart/related`` writing (PS3.18 §8.6.1.2, NEG-10).

The body is produced part by part while it is sent: each part's payload is an async iterator
(normally a blob being read from the object store), so a response never holds more than one chunk
(plus up to :data:`COALESCE_BYTES` of small pieces) in memory, whatever the number and size of its
parts. The wire form, byte for byte::

    --<boundary>CRLF
    Content-Type: <type>CRLF
    Content-Location: <url>CRLF
    Content-Length: <n>CRLF
    CRLF
    <payload>CRLF
    ... (one such block per part)
    --<boundary>--CRLF
"""

import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutgoingPart:
    """One part to write: its headers and its payload, read as it is written."""

    content_type: str
    chunks: AsyncIterator[bytes]
    content_location: str | None = None
    content_length: int | None = None
    content_range: str | None = None  # a byte range of the value (BULK-04)

    def header_block(self, boundary: str) -> bytes:
        """The delimiter line and the part headers, up to and including the empty line."""
        return part_header(
            boundary,
            self.content_type,
            content_location=self.content_location,
            content_length=self.content_length,
            content_range=self.content_range,
        )


def part_header(
    boundary: str,
    content_type: str,
    *,
    content_location: str | None = None,
    content_length: int | None = None,
    content_range: str | None = None,
) -> bytes:
    """A part's delimiter line and headers, up to and including the empty line.

    >>> part_header("b1", "application/dicom", content_length=3)
    b'--b1\\r\\nContent-Type: application/dicom\\r\\nContent-Length: 3\\r\\n\\r\\n'
    """
    lines = [f"--{boundary}", f"Content-Type: {content_type}"]
    if content_location is not None:
        lines.append(f"Content-Location: {content_location}")
    if content_range is not None:
        lines.append(f"Content-Range: {content_range}")
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def closing_delimiter(boundary: str) -> bytes:
    """The close-delimiter that ends the body (RFC 2046 §5.1.1)."""
    return f"--{boundary}--\r\n".encode("latin-1")


def new_boundary() -> str:
    """A random boundary token (RFC 2046 §5.1.1: 1-70 characters, here ASCII letters and digits).

    128 random bits make a collision with any payload negligible, so payloads are not scanned.
    """
    return f"lightbox{secrets.token_hex(16)}"


def multipart_content_type(part_type: str, boundary: str, *, transfer_syntax: str | None) -> str:
    """The Content-Type of a multipart/related response (NEG-10: ``type`` quoted).

    >>> multipart_content_type("application/dicom", "b1", transfer_syntax="1.2.840.10008.1.2.1")
    'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1; boundary=b1'
    """
    syntax = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'multipart/related; type="{part_type}"{syntax}; boundary={boundary}'


#: pieces shorter than this are gathered with their neighbours (part headers, delimiters, small
#: payloads) into one body chunk: each chunk costs an ASGI message through every middleware and
#: a socket write, while copying a few kilobytes costs next to nothing. Longer pieces go out
#: as they are, uncopied.
COALESCE_BYTES = 256 << 10


async def multipart_body(parts: Iterable[OutgoingPart], boundary: str) -> bytes:
    """The whole body of a multipart/related message holding ``parts``, in one piece.

    The same bytes as :func:`write_multipart`; for small responses, which are then sent with
    a Content-Length, in one write, instead of streamed in chunked transfer coding.
    """
    pieces: list[bytes] = []
    for part in parts:
        pieces.append(part.header_block(boundary))
        async for chunk in part.chunks:
            pieces.append(chunk)
        pieces.append(b"\r\n")
    pieces.append(closing_delimiter(boundary))
    return b"".join(pieces)


async def write_multipart(
    parts: AsyncIterable[OutgoingPart], boundary: str
) -> AsyncIterator[bytes]:
    """The body of a multipart/related message holding ``parts``, chunk by chunk.

    The bytes are those of the wire form above; how they are cut into chunks is not part of it:
    small pieces are joined (a part's headers with the end of the previous part, a small
    payload with both), large payload chunks are passed on as read.
    """
    pending: list[bytes] = []
    pending_size = 0
    async for part in parts:
        header = part.header_block(boundary)
        pending.append(header)
        pending_size += len(header)
        try:
            async for chunk in part.chunks:
                size = len(chunk)
                if size >= COALESCE_BYTES:
                    if pending:
                        yield b"".join(pending)
                        pending, pending_size = [], 0
                    yield chunk
                elif size:
                    pending.append(chunk)
                    pending_size += size
                    if pending_size >= COALESCE_BYTES:
                        yield b"".join(pending)
                        pending, pending_size = [], 0
        finally:
            aclose = getattr(part.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        pending.append(b"\r\n")
        pending_size += 2
    pending.append(closing_delimiter(boundary))
    yield b"".join(pending)

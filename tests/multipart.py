"""A strict reader of the multipart/related responses Lightbox writes (PS3.18 §8.6.1.2, NEG-10).

It checks the framing byte for byte (delimiters, CRLFs, Content-Length) rather than being lenient
like a client library, so the tests notice any drift in what we emit.
"""

import re
from dataclasses import dataclass

import httpx

CONTENT_TYPE = re.compile(
    r'^multipart/related; type="(?P<type>[a-z0-9/+.*-]+)"(?:; transfer-syntax=(?P<ts>[0-9.]+))?'
    r"; boundary=(?P<boundary>[A-Za-z0-9]+)$"
)


@dataclass
class Part:
    headers: dict[str, str]
    header_names: list[str]
    payload: bytes


def parse_multipart(response: httpx.Response) -> tuple[str, str | None, list[Part]]:
    """(part type, top-level transfer syntax, parts) of a multipart/related response."""
    match = CONTENT_TYPE.match(response.headers["content-type"])
    assert match, response.headers["content-type"]
    delimiter = b"--" + match["boundary"].encode()
    body = response.content
    parts: list[Part] = []
    pos = 0
    while True:
        assert body.startswith(delimiter, pos)
        pos += len(delimiter)
        if body[pos:] == b"--\r\n":
            return match["type"], match["ts"], parts
        assert body.startswith(b"\r\n", pos)
        end = body.index(b"\r\n\r\n", pos)
        lines = body[pos + 2 : end].decode("latin-1").split("\r\n")
        pairs = [line.split(": ", 1) for line in lines]
        pos = end + 4
        headers = dict(pairs)
        length = int(headers["Content-Length"])
        parts.append(Part(headers, [name for name, _ in pairs], body[pos : pos + length]))
        pos += length
        assert body.startswith(b"\r\n", pos)
        pos += 2

"""Streaming ``multipart/related`` reading (PS3.18 §8.6.1.2) on python-multipart's parser.

The body is fed to the parser chunk by chunk as it arrives; each part's payload goes straight into
a spool (memory up to a bound, then a temp file), so no request is ever held whole in memory.
Framing problems are reported as events, never raised past the reader, so STOW can keep the parts
that arrived intact and report the rest (STOW-05).
"""

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from app.errors import BadRequest, InstanceRejected, PayloadTooLarge
from app.services.spool import Spool, SpooledPart


@dataclass(frozen=True, slots=True)
class MediaType:
    """A parsed media type: lower-case ``type/subtype`` plus parameters (lower-case names)."""

    essence: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str | None) -> "MediaType":
        """Parse a Content-Type header value (quoted and unquoted parameters alike, NEG-01)."""
        if not value:
            return cls("")
        # header values are ISO 8859-1 (as Starlette decodes them); other text never parses
        essence, params = parse_options_header(value.encode("latin-1", "replace"))
        return cls(
            essence.decode("latin-1").strip().lower(),
            {
                k.decode("latin-1").lower(): v.decode("latin-1").strip('"')
                for k, v in params.items()
            },
        )


@dataclass(slots=True)
class Part:
    """One complete part: its headers and spooled payload."""

    headers: dict[str, str]
    payload: SpooledPart

    @property
    def media_type(self) -> MediaType:
        return MediaType.parse(self.headers.get("content-type"))


@dataclass(slots=True)
class PartFailed:
    """A part that could not be received (too large, cut off)."""

    error: InstanceRejected


@dataclass(slots=True)
class FramingError:
    """The multipart framing broke; nothing after this point can be read."""

    message: str
    parts_before: int


Event = Part | PartFailed | FramingError

#: the longest boundary read (python-multipart's own limit; RFC 2046 §5.1.1 allows 70 characters,
#: longer ones are accepted as python-multipart accepts them)
MAX_BOUNDARY_LENGTH = 256


class _Collector:
    """python-multipart callbacks that spool part data and collect completed parts."""

    def __init__(self, new_spool: Callable[[], Spool]) -> None:
        self._new_spool = new_spool
        self.events: list[Event] = []
        self.parts_seen = 0
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self.spool: Spool | None = None
        self._failed: InstanceRejected | None = None

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.parts_seen += 1
        self._headers = {}
        self._failed = None
        self.spool = self._new_spool()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._failed is not None or self.spool is None:
            return
        try:
            self.spool.write(memoryview(data)[start:end])
        except InstanceRejected as exc:
            self._failed = exc
            self.spool.discard()

    def on_part_end(self) -> None:
        spool, self.spool = self.spool, None
        if spool is None:
            return
        if self._failed is not None:
            self.events.append(PartFailed(self._failed))
            return
        self.events.append(Part(self._headers, spool.finish()))

    def discard_current(self) -> None:
        if self.spool is not None:
            self.spool.discard()
            self.spool = None


async def read_multipart(
    chunks: AsyncIterator[bytes],
    boundary: str,
    new_spool: Callable[[], Spool],
    *,
    max_bytes: int,
) -> AsyncIterator[Event]:
    """Yield each part of a multipart body as soon as it is complete.

    Raises :class:`PayloadTooLarge` once more than ``max_bytes`` arrived (after yielding the parts
    completed before that point), and :class:`BadRequest` when the body is not multipart at all
    (framing broken before the first part).
    """
    collector = _Collector(new_spool)
    parser = _parser(boundary, collector)
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                collector.discard_current()
                for event in _drain(collector):
                    yield event
                raise PayloadTooLarge(f"request body larger than {max_bytes} bytes")
            try:
                parser.write(chunk)
            except Exception as exc:  # python-multipart signals framing errors by raising
                collector.discard_current()
                for event in _drain(collector):
                    yield event
                if collector.parts_seen == 0:
                    raise BadRequest(f"malformed multipart body: {exc}") from None
                yield FramingError(f"malformed multipart body: {exc}", collector.parts_seen)
                return
            for event in _drain(collector):
                yield event
        state = parser.state
        if state is not MultipartState.END:
            collector.discard_current()
            if collector.parts_seen == 0:
                raise BadRequest("the body holds no multipart part (check the boundary)")
            yield FramingError("the multipart body ends before its closing boundary", 0)
    finally:
        collector.discard_current()


def _parser(boundary: str, collector: _Collector) -> MultipartParser:
    """The parser for ``boundary``, or :class:`BadRequest` saying what is wrong with it."""
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        raise BadRequest(
            f"the multipart boundary is {len(boundary)} characters long; at most "
            f"{MAX_BOUNDARY_LENGTH} are accepted (RFC 2046 §5.1.1 allows 70)"
        )
    try:
        return MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    except (FormParserError, ValueError, UnicodeError) as exc:  # limits the check above misses
        raise BadRequest(f"unusable multipart boundary: {exc}") from None


def _drain(collector: _Collector) -> list[Event]:
    events, collector.events = collector.events, []
    return events

"""HTTP byte ranges (RFC 9110 §14) on bulk data values (BULK-04).

One range per request is served (``206`` + ``Content-Range``); a request for several ranges, a
malformed ``Range`` or another unit is answered whole (``200``), which RFC 9110 §14.2 allows
("a server MAY ignore the Range header field"). A range that starts beyond the value is
unsatisfiable (``416`` + ``Content-Range: bytes */size``). An ``If-Range`` makes us send the whole
value: bulk data responses carry no validator to compare it with.
"""

import re
from dataclasses import dataclass
from typing import Final

_SPEC = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*")
#: beyond every value's size: a position with more digits than this is read as this
_BEYOND: Final = 10**20


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive of a value of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


class Unsatisfiable(Exception):
    """The range does not overlap the value (RFC 9110 §15.5.17: 416)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the requested range is beyond the {size} bytes of the value")
        self.size = size


def parse_range(header: str | None, size: int, *, if_range: str | None = None) -> ByteRange | None:
    """The single byte range a ``Range`` header asks of a ``size``-byte value, or None (whole).

    Raises :class:`Unsatisfiable` when the range lies beyond the value.

    >>> parse_range("bytes=0-9", 100), parse_range("bytes=90-", 100).content_range
    (ByteRange(start=0, end=9, size=100), 'bytes 90-99/100')
    >>> parse_range("bytes=-10", 100).start, parse_range("bytes=5-500", 100).end
    (90, 99)
    >>> parse_range("bytes=0-1,5-6", 100) is None, parse_range("items=1-2", 100) is None
    (True, True)
    >>> parse_range("bytes=100-", 100)
    Traceback (most recent call last):
    ...
    app.api.ranges.Unsatisfiable: the requested range is beyond the 100 bytes of the value
    """
    if header is None or if_range is not None:
        return None
    match = _SPEC.fullmatch(header)
    if match is None:
        return None  # several ranges, another unit or malformed: send it all
    first, last = (digits.lstrip("0") or ("0" if digits else "") for digits in match.groups())
    if not first:
        if not last:
            return None
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(size)
        return ByteRange(max(0, size - suffix), size - 1, size)
    if last and (len(last), last) < (len(first), first):
        return None  # invalid: ignored (RFC 9110 §14.1.1); compared as text, of any length
    start = _position(first)
    end = _position(last) if last else size - 1
    if start >= size:
        raise Unsatisfiable(size)
    return ByteRange(start, min(end, size - 1), size)


def _position(digits: str) -> int:
    """A byte position without leading zeros; very long ones (which ``int()`` refuses past 4300
    digits) are :data:`_BEYOND`, as far past the end of any value as they are."""
    return int(digits) if len(digits) <= 20 else _BEYOND

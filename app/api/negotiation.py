"""Content negotiation: Accept -> what the client accepts, as a typed request (PS3.18 §8.7).

Two parts:

* :func:`parse_accept` reads an Accept value as RFC 9110 §12.5.1 (was RFC 7231 §5.3.2) describes it:
  comma-separated media ranges, ``q`` weights (default 1), case-insensitive type, subtype and
  parameter names, optional whitespace, and quoted and unquoted parameter values alike (NEG-01):
  OHIF sends ``multipart/related; type=application/dicom; transfer-syntax=*`` unquoted,
  dicomweb-client sends ``multipart/related; type="application/dicom"`` quoted.
* :func:`dicom_accepted`, :func:`frames_accepted` and :func:`bulk_accepted` read the media
  ranges of a retrieve into :class:`~app.services.retrieve.Accepted`, the typed request the
  retrieve service chooses from once it knows the instances
  (:mod:`app.services.retrieve.choice`; a DIMSE front end gives its presentation contexts the
  same way). For the "DICOM instance" resource category (PS3.18 §8.7.8.1,
  NEG-02/03/05/06/10/11): the ``accept`` query parameter first (no wildcards in it, NEG-05), then
  the Accept header, ``*/*`` and ``multipart/*`` standing for the category default
  ``multipart/related; type="application/dicom"`` (NEG-03), and plain ``application/dicom``
  only for a single instance (NEG-11). A missing Accept header counts as ``*/*`` unless
  ``strict_accept`` is set (NEG-04: then 406, as PS3.18 §8.7.5 says). Ranges we cannot serve
  are dropped; if nothing is left the answer is 406. :func:`negotiate_dicom`,
  :func:`negotiate_frames` and :func:`negotiate_bulk` do both steps at once.

The legacy names ``image/x-dicom-rle`` and ``image/x-jls`` are read as ``image/dicom-rle`` and
``image/jls`` (NEG-13); responses always use the current names.

Transfer syntax values (NEG-06): ``None`` means "not asked for" (the category default, Explicit VR
Little Endian, NEG-07), ``"*"`` means "as stored", anything else is a UID.
"""

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from app.dicom.uids import is_valid_uid
from app.errors import NotAcceptable
from app.services.retrieve.choice import (
    FRAME_MEDIA_TYPES,
    OCTET_STREAM,
    BulkRepresentation,
    FrameRepresentation,
    choose_bulk,
    choose_frames,
    choose_syntax,
)
from app.services.retrieve.requests import Acceptable, Accepted

__all__ = [
    "ANY_TRANSFER_SYNTAX",
    "DICOM",
    "DICOM_JSON",
    "FRAME_MEDIA_TYPES",
    "LEGACY_NAMES",
    "MULTIPART_RELATED",
    "OCTET_STREAM",
    "ZIP",
    "BulkRepresentation",
    "DicomRepresentation",
    "FrameRepresentation",
    "MediaRange",
    "Packaging",
    "accept_stages",
    "acceptable_dicom",
    "archive_wanted",
    "bulk_accepted",
    "dicom_accepted",
    "frames_accepted",
    "negotiate_bulk",
    "negotiate_dicom",
    "negotiate_frames",
    "negotiate_json",
    "parse_accept",
    "parse_media_range",
]

DICOM = "application/dicom"
ZIP = "application/zip"
MULTIPART_RELATED = "multipart/related"
ANY_TRANSFER_SYNTAX = "*"


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One media range of an Accept value: lower-case type and subtype, parameters, weight."""

    type: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def essence(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def is_wildcard(self) -> bool:
        return self.type == "*" or self.subtype == "*"


def _split(value: str, separator: str) -> list[str]:
    """Split on ``separator`` outside quoted strings (backslash escapes inside quotes)."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return pieces


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out: list[str] = []
        escaped = False
        for char in value[1:-1]:
            if not escaped and char == "\\":
                escaped = True
                continue
            escaped = False
            out.append(char)
        return "".join(out)
    return value


def _weight(value: str) -> float | None:
    """A ``q`` value (RFC 9110 §12.4.2): 0 to 1, at most three decimals; None if invalid."""
    text = value.strip()
    try:
        q = float(text)
    except ValueError:
        return None
    if not 0.0 <= q <= 1.0 or not text[:1].isdigit():
        return None
    return q


#: NEG-13: legacy media type names (PS3.18 §8.7.3.3.2 note 8) and the current ones
LEGACY_NAMES: dict[str, str] = {
    "image/x-dicom-rle": "image/dicom-rle",
    "image/x-jls": "image/jls",
}


def parse_media_range(text: str) -> MediaRange | None:
    """Parse one media range; None when it is malformed (such ranges are dropped, NEG-03).

    >>> r = parse_media_range('Multipart/Related; TYPE="application/dicom"; q=0.5')
    >>> (r.essence, r.params, r.q)
    ('multipart/related', {'type': 'application/dicom'}, 0.5)
    >>> parse_media_range("multipart/related; type=application/dicom").params
    {'type': 'application/dicom'}
    >>> parse_media_range("nonsense") is None
    True
    >>> parse_media_range("image/x-jls").essence  # NEG-13
    'image/jls'
    """
    head, *rest = _split(text, ";")
    essence = head.strip().lower()
    essence = LEGACY_NAMES.get(essence, essence)
    kind, slash, subtype = essence.partition("/")
    if not slash or not kind or not subtype or "/" in subtype or (kind == "*" and subtype != "*"):
        return None
    params: dict[str, str] = {}
    q = 1.0
    for item in rest:
        if not item.strip():
            continue
        name, equals, raw = item.partition("=")
        name = name.strip().lower()
        if not equals or not name:
            return None
        if name == "q":
            weight = _weight(raw)
            if weight is None:
                return None
            q = weight
        else:
            params[name] = _unquote(raw)
    return MediaRange(kind.strip(), subtype.strip(), params, q)


def parse_accept(value: str) -> list[MediaRange]:
    """Parse an Accept value into its well-formed media ranges, in the order given (NEG-01).

    >>> [(r.essence, r.q) for r in parse_accept("application/dicom;q=0.8, */*;q=0.1, bad")]
    [('application/dicom', 0.8), ('*/*', 0.1)]
    """
    ranges: list[MediaRange] = []
    for piece in _split(value, ","):
        if piece.strip():
            parsed = parse_media_range(piece)
            if parsed is not None:
                ranges.append(parsed)
    return ranges


def accept_stages(
    query: Sequence[str], header: str | None, *, strict: bool = False
) -> list[list[MediaRange]]:
    """The media ranges to try, in order of precedence (PS3.18 §8.7.8.1, NEG-02/04/05).

    The ``accept`` query parameter first, without wildcards (NEG-05), then the Accept header; a
    missing header counts as ``*/*`` unless ``strict`` (NEG-04), in which case it adds nothing.

    >>> [[r.essence for r in stage] for stage in accept_stages(["a/b", "*/*"], None)]
    [['a/b'], ['*/*']]
    >>> accept_stages([], None, strict=True)
    []
    """
    stages: list[list[MediaRange]] = []
    if query:
        stages.append([r for r in parse_accept(",".join(query)) if not r.is_wildcard])
    if header is not None:
        stages.append(parse_accept(header))
    elif not strict:
        stages.append(parse_accept("*/*"))
    return stages


def _missing_accept(query: Sequence[str], header: str | None, strict: bool) -> None:
    """NEG-04: with ``strict_accept``, a request naming no media type at all is 406."""
    if strict and header is None and not query:
        raise NotAcceptable(_NO_ACCEPT)


_NO_ACCEPT = "no Accept header: name the media types you accept (PS3.18 §8.7.5, strict_accept)"


def _accepted(
    query: Sequence[str],
    header: str | None,
    strict: bool,
    acceptable: Callable[[MediaRange], Acceptable | None],
) -> Accepted:
    """The typed request of one resource category: each stage's ranges, as ``acceptable``
    reads them (a range it cannot read is left out; an empty stage stays, NEG-02)."""
    groups = tuple(
        tuple(a for r in stage if r.q > 0 and (a := acceptable(r)) is not None)
        for stage in accept_stages(query, header, strict=strict)
    )
    return Accepted(groups, _NO_ACCEPT)


# --- the DICOM instance category (PS3.18 §8.7.8.1; NEG-02/03/05/06/10/11) ---


class Packaging(enum.Enum):
    """How instances are sent: one multipart/related body, or a single application/dicom body."""

    MULTIPART = "multipart"
    SINGLE = "single"


@dataclass(frozen=True, slots=True)
class DicomRepresentation:
    """A representation of the DICOM instance category the client accepts.

    ``transfer_syntax`` is None (default: Explicit VR Little Endian, NEG-07), ``"*"`` (as stored,
    NEG-06) or a Transfer Syntax UID.
    """

    packaging: Packaging
    transfer_syntax: str | None
    q: float = 1.0


def _transfer_syntax(params: dict[str, str]) -> tuple[bool, str | None]:
    """(valid, value) of a ``transfer-syntax`` parameter (NEG-06)."""
    value = params.get("transfer-syntax")
    if value is None:
        return True, None
    value = value.strip()
    if value == ANY_TRANSFER_SYNTAX or is_valid_uid(value):
        return True, value
    return False, None


def _dicom_representation(r: MediaRange, *, single_part: bool) -> DicomRepresentation | None:
    """What ``r`` asks for in the DICOM instance category, or None when we do not serve it."""
    if r.q <= 0:
        return None
    essence = r.essence
    if essence in ("*/*", "multipart/*"):
        return DicomRepresentation(Packaging.MULTIPART, None, r.q)  # category default (NEG-03)
    if essence == MULTIPART_RELATED:
        part_type = r.params.get("type")
        if part_type is not None:
            inner = parse_media_range(part_type)
            # dicomweb-client lets a caller ask for type="application/*"; that matches too
            if inner is None or inner.essence not in (DICOM, "application/*", "*/*"):
                return None
        valid, syntax = _transfer_syntax(r.params)
        return DicomRepresentation(Packaging.MULTIPART, syntax, r.q) if valid else None
    if essence == DICOM and single_part:
        valid, syntax = _transfer_syntax(r.params)
        return DicomRepresentation(Packaging.SINGLE, syntax, r.q) if valid else None
    return None


def acceptable_dicom(
    accept: str | None, *, single_part: bool, wildcards: bool = True
) -> list[DicomRepresentation]:
    """The representations of the DICOM instance category an Accept value allows, best first.

    Sorted by ``q`` (highest first), ties kept in the client's order.

    >>> acceptable_dicom("multipart/related; type=application/dicom; transfer-syntax=*",
    ...                  single_part=False)
    [DicomRepresentation(packaging=<Packaging.MULTIPART: 'multipart'>, transfer_syntax='*', q=1.0)]
    >>> acceptable_dicom("application/dicom", single_part=False)
    []
    """
    ranges = [r for r in parse_accept(accept or "") if wildcards or not r.is_wildcard]
    reps = [rep for r in ranges if (rep := _dicom_representation(r, single_part=single_part))]
    return sorted(reps, key=lambda rep: -rep.q)


def _dicom_acceptable(r: MediaRange) -> Acceptable | None:
    rep = _dicom_representation(r, single_part=True)  # the service knows whether it is one
    if rep is None:
        return None
    return Acceptable(DICOM, rep.transfer_syntax, rep.q, rep.packaging is Packaging.SINGLE)


def dicom_accepted(query: Sequence[str], header: str | None, *, strict: bool = False) -> Accepted:
    """What the client accepts of the DICOM instance category (PS3.18 §8.7.8.1).

    ``query`` holds the values of the ``accept`` query parameter (it takes precedence, NEG-05),
    ``header`` the Accept header (None when absent: ``*/*``, or nothing when ``strict``,
    NEG-04). ``*/*`` and ``multipart/*`` stand for the category default (NEG-03); a bare
    ``application/dicom`` asks for a single instance alone (NEG-11). The retrieve service
    chooses among them (:func:`app.services.retrieve.choice.choose_syntax`).

    >>> [a.transfer_syntax for a in dicom_accepted([], OHIF_ACCEPT).groups[0]]
    ['*']
    """
    return _accepted(query, header, strict, _dicom_acceptable)


def _zip_range(r: MediaRange) -> bool:
    """Whether ``r`` asks for a ZIP archive we make: ``application/zip`` with no transfer
    syntax or ``*`` (the instances go in as stored)."""
    return r.essence == ZIP and r.params.get("transfer-syntax", "*").strip() == ANY_TRANSFER_SYNTAX


def archive_wanted(query: Sequence[str], header: str | None) -> bool:
    """Whether a study or series is to be sent as a ZIP archive (PS3.18 Table 10.4.4-1,
    ``application/zip``, optional) rather than as ``multipart/related`` instances.

    The first stage (NEG-05) naming either decides; in it the higher ``q`` wins, the client's
    order breaking ties. ``*/*`` stands for the category default, multipart (NEG-03).

    >>> archive_wanted([], "application/zip"), archive_wanted([], "*/*")
    (True, False)
    >>> archive_wanted([], "multipart/related; type=application/dicom, application/zip")
    False
    >>> archive_wanted(["application/zip"], "multipart/related; type=application/dicom")
    True
    >>> archive_wanted([], "application/zip; transfer-syntax=1.2.840.10008.1.2.4.50")
    False
    """
    for stage in accept_stages(query, header):
        best: tuple[float, bool] | None = None
        for r in stage:
            if r.q <= 0:
                continue
            if _zip_range(r):
                zip_wanted = True
            elif _dicom_representation(r, single_part=False) is not None:
                zip_wanted = False
            else:
                continue
            if best is None or r.q > best[0]:
                best = (r.q, zip_wanted)
        if best is not None:
            return best[1]
    return False


#: what OHIF asks for (unquoted parameters)
OHIF_ACCEPT = "multipart/related; type=application/dicom; transfer-syntax=*"


def negotiate_dicom(
    query: Sequence[str],
    header: str | None,
    *,
    single_part: bool,
    producible: Callable[[str | None], tuple[int, int]],
    strict: bool = False,
) -> Acceptable:
    """:func:`dicom_accepted` and the service's choice among them in one step (NEG-02).

    ``single_part`` allows plain ``application/dicom``; ``producible(transfer_syntax)`` says
    how many instances can be sent for that syntax and how many of those are transcoded.
    """
    return choose_syntax(
        dicom_accepted(query, header, strict=strict), whole=single_part, producible=producible
    )


# --- metadata (PS3.18 §8.7.5, META-01) ---

DICOM_JSON = "application/dicom+json"
_JSON_TYPES = frozenset({DICOM_JSON, "application/json", "application/*", "*/*"})


def negotiate_json(query: Sequence[str], header: str | None, *, strict: bool = False) -> str:
    """The media type of a metadata response, or :class:`NotAcceptable` (META-01).

    ``application/dicom+json``, ``application/json`` and wildcards are accepted; the response is
    always labelled ``application/dicom+json``. No Accept header counts as ``*/*`` (NEG-04).

    >>> negotiate_json([], "application/json; q=0.5, text/html")
    'application/dicom+json'
    >>> negotiate_json([], "application/dicom")
    Traceback (most recent call last):
    ...
    app.errors.NotAcceptable: acceptable: application/dicom+json, application/json
    """
    _missing_accept(query, header, strict)
    for ranges in accept_stages(query, header, strict=strict):
        if any(r.q > 0 and r.essence in _JSON_TYPES for r in ranges):
            return DICOM_JSON
    raise NotAcceptable("acceptable: application/dicom+json, application/json")


# --- frames (PS3.18 §8.7.3.3, Table 8.7.3-5; FRM-02/05, NEG-12) ---


def _frame_acceptable(r: MediaRange) -> Acceptable | None:
    """What ``r`` asks for of frames: a part type with its transfer syntax, in a multipart body
    or (a bare, non-wildcard type) alone."""
    if r.essence in ("*/*", "multipart/*"):
        return Acceptable("*/*", None, r.q)
    if r.essence == MULTIPART_RELATED:
        inner = parse_media_range(r.params.get("type", OCTET_STREAM))
        whole = False
    elif not r.is_wildcard:
        inner, whole = r, True
    else:
        return None
    if inner is None:
        return None
    params = r.params if "transfer-syntax" in r.params else inner.params
    valid, syntax = _transfer_syntax(params)
    return Acceptable(inner.essence, syntax, r.q, whole) if valid else None


def frames_accepted(query: Sequence[str], header: str | None, *, strict: bool = False) -> Accepted:
    """What the client accepts of frames and pixel data (FRM-02/05, NEG-11/12); the retrieve
    service chooses per instance (:func:`app.services.retrieve.choice.choose_frames`)."""
    return _accepted(query, header, strict, _frame_acceptable)


def negotiate_frames(
    query: Sequence[str],
    header: str | None,
    stored: str,
    *,
    native: bool,
    as_stored: bool = True,
    decodable: bool = False,
    single_part: bool = False,
    strict: bool = False,
    refusal: str | None = None,
) -> FrameRepresentation:
    """:func:`frames_accepted` and the service's choice for frames stored in ``stored``.

    >>> negotiate_frames([], "multipart/related; type=application/octet-stream; transfer-syntax=*",
    ...                  "1.2.840.10008.1.2.4.90", native=False).part_type
    'image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90'
    >>> negotiate_frames([], 'multipart/related; type="application/octet-stream"',
    ...                  "1.2.840.10008.1.2.4.90", native=False, decodable=True).decode
    True
    """
    return choose_frames(
        frames_accepted(query, header, strict=strict),
        stored,
        native=native,
        as_stored=as_stored,
        decodable=decodable,
        whole=single_part,
        refusal=refusal,
    )


# --- bulk data (PS3.18 §8.7.3.3, Table 8.7.3-4; BULK-01/02, NEG-11) ---


def _bulk_acceptable(r: MediaRange) -> Acceptable | None:
    """What ``r`` asks for of a bulk data value: a type (wildcards: the value's own), in a
    multipart body or (a bare, non-wildcard type) alone."""
    if r.essence in ("*/*", "multipart/*"):
        return Acceptable("*/*", None, r.q)
    if r.essence == MULTIPART_RELATED:
        part_type = r.params.get("type")
        if part_type is None:
            return Acceptable("*/*", None, r.q)  # the value's own type
        inner = parse_media_range(part_type)
        return None if inner is None else Acceptable(inner.essence, None, r.q)
    if r.is_wildcard:
        return None
    return Acceptable(r.essence, None, r.q, whole=True)


def bulk_accepted(query: Sequence[str], header: str | None, *, strict: bool = False) -> Accepted:
    """What the client accepts of bulk data (BULK-01/02); the retrieve service chooses per
    value (:func:`app.services.retrieve.choice.choose_bulk`)."""
    return _accepted(query, header, strict, _bulk_acceptable)


def negotiate_bulk(
    query: Sequence[str], header: str | None, natural: str = OCTET_STREAM, *, strict: bool = False
) -> BulkRepresentation:
    """:func:`bulk_accepted` and the service's choice for a value whose type is ``natural``.

    The default is ``multipart/related; type="<natural>"`` with one part (BULK-01); a plain
    ``application/octet-stream`` (or ``natural``) asks for a single-part body (NEG-11).

    >>> negotiate_bulk([], None)
    BulkRepresentation(media_type='application/octet-stream', whole=False)
    >>> negotiate_bulk(["application/pdf"], "*/*", "application/pdf").whole
    True
    """
    return choose_bulk(bulk_accepted(query, header, strict=strict), natural)

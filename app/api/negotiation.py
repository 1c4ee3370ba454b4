"""Content negotiation: Accept -> representation + transfer syntax, or 406 (PS3.18 §8.7).

Two parts:

* :func:`parse_accept` reads an Accept value as RFC 9110 §12.5.1 (was RFC 7231 §5.3.2) describes it:
  comma-separated media ranges, ``q`` weights (default 1), case-insensitive type, subtype and
  parameter names, optional whitespace, and quoted and unquoted parameter values alike (NEG-01):
  OHIF sends ``multipart/related; type=application/dicom; transfer-syntax=*`` unquoted,
  dicomweb-client sends ``multipart/related; type="application/dicom"`` quoted.
* :func:`negotiate_dicom` selects the representation of the "DICOM instance" resource category
  (PS3.18 §8.7.8.1, NEG-02/03/05/06/10/11): the ``accept`` query parameter first (no wildcards
  in it, NEG-05), then the Accept header, ``*/*`` and ``multipart/*`` standing for the category
  default ``multipart/related; type="application/dicom"`` (NEG-03), and plain
  ``application/dicom`` only for a single instance (NEG-11). A missing Accept header counts as
  ``*/*`` unless ``strict_accept`` is set (NEG-04: then 406, as PS3.18 §8.7.5 says). Ranges we
  cannot serve are dropped; if nothing is left the answer is 406.

The legacy names ``image/x-dicom-rle`` and ``image/x-jls`` are read as ``image/dicom-rle`` and
``image/jls`` (NEG-13); responses always use the current names.

Transfer syntax values (NEG-06): ``None`` means "not asked for" (the category default, Explicit VR
Little Endian, NEG-07), ``"*"`` means "as stored", anything else is a UID.
"""

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from app.dicom.uids import EXPLICIT_VR_LITTLE_ENDIAN, is_valid_uid
from app.errors import NotAcceptable

DICOM = "application/dicom"
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
        raise NotAcceptable(
            "no Accept header: name the media types you accept (PS3.18 §8.7.5, strict_accept)"
        )


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
    return _acceptable(ranges, single_part=single_part)


def _acceptable(ranges: Iterable[MediaRange], *, single_part: bool) -> list[DicomRepresentation]:
    reps: list[DicomRepresentation] = []
    for r in ranges:
        rep = _dicom_representation(r, single_part=single_part)
        if rep is not None:
            reps.append(rep)
    return sorted(reps, key=lambda rep: -rep.q)


def negotiate_dicom(
    query: Sequence[str],
    header: str | None,
    *,
    single_part: bool,
    producible: Callable[[str | None], tuple[int, int]],
    strict: bool = False,
) -> DicomRepresentation:
    """Select the representation of a retrieve in the DICOM instance category (PS3.18 §8.7.8.1).

    ``query`` holds the values of the ``accept`` query parameter (it takes precedence, NEG-05),
    ``header`` the Accept header (None when absent: ``*/*``, or 406 when ``strict``, NEG-04).
    ``single_part`` allows plain ``application/dicom`` (a single instance, NEG-11).
    ``producible(transfer_syntax)`` says how many of the target's instances can be sent for that
    request and how many of those need transcoding; a range yielding none is not supported and
    dropped. Among the rest the highest ``q`` wins; on equal ``q`` the one that sends the most
    instances, then the one that transcodes the fewest (NEG-02). Raises
    :class:`NotAcceptable` (406) when nothing is left.
    """
    _missing_accept(query, header, strict)
    unproducible: list[str] = []
    for ranges in accept_stages(query, header, strict=strict):
        best = _best(_acceptable(ranges, single_part=single_part), producible, unproducible)
        if best is not None:
            return best
    if unproducible:
        asked = ", ".join(dict.fromkeys(unproducible))
        raise NotAcceptable(
            f"no instance can be returned in transfer syntax {asked}: Lightbox sends the stored "
            f"syntax (transfer-syntax=*) or decodes to {EXPLICIT_VR_LITTLE_ENDIAN}"
        )
    raise NotAcceptable(
        'acceptable: multipart/related; type="application/dicom"[; transfer-syntax=UID|*]'
        + (", application/dicom[; transfer-syntax=UID|*]" if single_part else "")
    )


def _best(
    reps: Iterable[DicomRepresentation],
    producible: Callable[[str | None], tuple[int, int]],
    unproducible: list[str],
) -> DicomRepresentation | None:
    best: tuple[tuple[float, int, int], DicomRepresentation] | None = None
    for rep in reps:
        count, transcoded = producible(rep.transfer_syntax)
        if count == 0:
            unproducible.append(rep.transfer_syntax or f"{EXPLICIT_VR_LITTLE_ENDIAN} (the default)")
            continue
        rank = (rep.q, count, -transcoded)
        if best is None or rank > best[0]:
            best = (rank, rep)
    return None if best is None else best[1]


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

OCTET_STREAM = "application/octet-stream"

#: Table 8.7.3-5: the media type of a frame in each compressed transfer syntax
FRAME_MEDIA_TYPES: dict[str, str] = {
    **dict.fromkeys(
        ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57"),
        "image/jpeg",
    ),
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
}
#: NEG-12: the transfer syntax an image media type means when none is given
_DEFAULT_SYNTAX: dict[str, str] = {
    "image/jpeg": "1.2.840.10008.1.2.4.70",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jpx": "1.2.840.10008.1.2.4.92",
    "image/dicom-rle": "1.2.840.10008.1.2.5",
    "image/jphc": "1.2.840.10008.1.2.4.201",
}


@dataclass(frozen=True, slots=True)
class FrameRepresentation:
    """How frames are sent: the media type, the transfer syntax they are in, whether they are
    decoded from the stored (compressed) frames, and single-part or multipart (NEG-11)."""

    media_type: str
    transfer_syntax: str
    decode: bool = False
    packaging: Packaging = Packaging.MULTIPART

    @property
    def part_type(self) -> str:
        return f"{self.media_type}; transfer-syntax={self.transfer_syntax}"


def stored_frames(stored: str, *, native: bool) -> FrameRepresentation:
    """Frames as stored: native ones always go out little endian, bit 0 aligned (FRM-03).

    >>> stored_frames("1.2.840.10008.1.2.5", native=False).part_type
    'image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5'
    >>> stored_frames("1.2.840.10008.1.2.2", native=True).part_type
    'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1'
    """
    if native:
        return FrameRepresentation(OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN)
    return FrameRepresentation(FRAME_MEDIA_TYPES.get(stored, OCTET_STREAM), stored)


def _frame_match(
    essence: str,
    syntax: str | None,
    stored: FrameRepresentation | None,
    decoded: FrameRepresentation | None,
) -> FrameRepresentation | None:
    """The representation a part type ``essence`` with ``transfer-syntax`` ``syntax`` means."""
    if essence in ("*/*", "application/*", "image/*"):
        if syntax in (None, ANY_TRANSFER_SYNTAX):
            return stored or decoded  # the server's choice: as stored (NEG-02, no transcoding)
        if stored is not None and syntax == stored.transfer_syntax:
            return stored
        return decoded if syntax == EXPLICIT_VR_LITTLE_ENDIAN else None
    if essence == OCTET_STREAM:
        if syntax == ANY_TRANSFER_SYNTAX:
            return stored or decoded
        if syntax in (None, EXPLICIT_VR_LITTLE_ENDIAN):
            return decoded  # uncompressed (FRM-05), decoded when stored compressed
        # a compressed syntax named with octet-stream: the stored frame, labelled (FRM-05)
        return stored if stored is not None and syntax == stored.transfer_syntax else None
    if stored is None or essence != stored.media_type or stored.media_type == OCTET_STREAM:
        return None  # an image type we would have to encode into
    if syntax in (ANY_TRANSFER_SYNTAX, stored.transfer_syntax):
        return stored
    if syntax is None and _DEFAULT_SYNTAX.get(essence) == stored.transfer_syntax:
        return stored  # the type alone means its NEG-12 default syntax
    return None


def _frame_representation(
    r: MediaRange,
    stored: FrameRepresentation | None,
    decoded: FrameRepresentation | None,
    *,
    single_part: bool,
) -> FrameRepresentation | None:
    """What ``r`` asks for, if we can send it."""
    if r.q <= 0:
        return None
    if r.essence in ("*/*", "multipart/*"):
        return stored or decoded
    if r.essence == MULTIPART_RELATED:
        inner = parse_media_range(r.params.get("type", OCTET_STREAM))
        packaging = Packaging.MULTIPART
    elif single_part and not r.is_wildcard:
        inner, packaging = r, Packaging.SINGLE
    else:
        return None
    if inner is None:
        return None
    params = r.params if "transfer-syntax" in r.params else inner.params
    valid, syntax = _transfer_syntax(params)
    if not valid:
        return None
    rep = _frame_match(inner.essence, syntax, stored, decoded)
    return None if rep is None else replace(rep, packaging=packaging)


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
    """Select the representation of a frame or pixel data retrieve (FRM-05), or 406.

    The stored frames (native ones little endian, FRM-03; compressed ones labelled with their
    Table 8.7.3-5 media type) when ``as_stored``; native Explicit VR Little Endian frames,
    ``decode``-d from compressed ones when ``decodable``. ``single_part`` allows a bare media type
    (one frame, NEG-11). ``query`` (the ``accept`` parameter, no wildcards) comes before
    ``header`` (None: ``*/*``, or nothing when ``strict``, NEG-04). The highest ``q`` wins; on
    equal ``q``, a representation without decoding (NEG-02). ``refusal`` says why the frames
    cannot be decoded (the decode limits); the 406 gives it.

    >>> negotiate_frames([], "multipart/related; type=application/octet-stream; transfer-syntax=*",
    ...                  "1.2.840.10008.1.2.4.90", native=False).part_type
    'image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90'
    >>> negotiate_frames([], 'multipart/related; type="application/octet-stream"',
    ...                  "1.2.840.10008.1.2.4.90", native=False, decodable=True).decode
    True
    """
    _missing_accept(query, header, strict)
    stored_rep = stored_frames(stored, native=native) if as_stored else None
    decoded_rep: FrameRepresentation | None = None
    if native and stored_rep is not None:
        decoded_rep = stored_rep
    elif native or decodable:
        decoded_rep = FrameRepresentation(OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN, decode=True)
    for ranges in accept_stages(query, header, strict=strict):
        best: tuple[tuple[float, bool], FrameRepresentation] | None = None
        for r in ranges:
            rep = _frame_representation(r, stored_rep, decoded_rep, single_part=single_part)
            if rep is not None and (best is None or (r.q, not rep.decode) > best[0]):
                best = ((r.q, not rep.decode), rep)
        if best is not None:
            return best[1]
    acceptable = ['multipart/related; type="application/octet-stream"'] if decoded_rep else []
    if stored_rep is not None and stored_rep.media_type != OCTET_STREAM:
        acceptable.append(
            f'multipart/related; type="{stored_rep.media_type}"; transfer-syntax={stored}'
        )
    if stored_rep is not None:
        acceptable.append('multipart/related; type="application/octet-stream"; transfer-syntax=*')
    why = "" if decoded_rep else f" (frames in {stored} cannot be decoded here)"
    if refusal is not None:
        why = f" ({refusal})"
    raise NotAcceptable("acceptable: " + ", ".join(acceptable) + why)


# --- bulk data (PS3.18 §8.7.3.3, Table 8.7.3-4; BULK-01/02, NEG-11) ---


@dataclass(frozen=True, slots=True)
class BulkRepresentation:
    """How a bulk data value is sent: multipart/related (one part) or single-part, and its type."""

    packaging: Packaging
    media_type: str


def _bulk_representation(r: MediaRange, natural: str) -> BulkRepresentation | None:
    """What ``r`` asks for of a value whose own type is ``natural``; None if not served.

    The value can be labelled ``application/octet-stream`` (always) or ``natural`` (the MIME type
    of an Encapsulated Document, BULK-02); wildcards mean ``natural``.
    """
    if r.q <= 0:
        return None
    if r.essence in ("*/*", "multipart/*"):
        return BulkRepresentation(Packaging.MULTIPART, natural)
    if r.essence == MULTIPART_RELATED:
        inner = parse_media_range(r.params.get("type", natural))
        if inner is None:
            return None
        media = _bulk_media_type(inner, natural)
        return None if media is None else BulkRepresentation(Packaging.MULTIPART, media)
    if r.is_wildcard:
        return None
    media = _bulk_media_type(r, natural)
    return None if media is None else BulkRepresentation(Packaging.SINGLE, media)


def _bulk_media_type(r: MediaRange, natural: str) -> str | None:
    if r.essence in (OCTET_STREAM, natural):
        return r.essence
    if r.essence == "*/*" or (r.subtype == "*" and natural.startswith(f"{r.type}/")):
        return natural
    return None


def negotiate_bulk(
    query: Sequence[str], header: str | None, natural: str = OCTET_STREAM, *, strict: bool = False
) -> BulkRepresentation:
    """Select the representation of a BulkDataURI retrieve, or :class:`NotAcceptable`.

    The default is ``multipart/related; type="<natural>"`` with one part (BULK-01); a plain
    ``application/octet-stream`` (or ``natural``) asks for a single-part body (NEG-11).
    ``natural`` is ``application/octet-stream``, or the MIME Type of Encapsulated Document for
    an Encapsulated Document (BULK-02). ``query`` (the ``accept`` parameter, no wildcards) comes
    before ``header`` (None: ``*/*``, NEG-04); the highest ``q`` wins, ties in the client's order.

    >>> negotiate_bulk([], None)
    BulkRepresentation(packaging=<Packaging.MULTIPART: 'multipart'>, \
media_type='application/octet-stream')
    >>> negotiate_bulk(["application/pdf"], "*/*", "application/pdf").packaging
    <Packaging.SINGLE: 'single'>
    """
    _missing_accept(query, header, strict)
    for ranges in accept_stages(query, header, strict=strict):
        best: tuple[float, BulkRepresentation] | None = None
        for r in ranges:
            rep = _bulk_representation(r, natural)
            if rep is not None and (best is None or r.q > best[0]):
                best = (r.q, rep)
        if best is not None:
            return best[1]
    types = dict.fromkeys((OCTET_STREAM, natural))
    raise NotAcceptable(
        "acceptable: "
        + ", ".join(f'multipart/related; type="{t}"' for t in types)
        + ", "
        + ", ".join(types)
    )

"""Which representation a retrieve sends, decided from what the caller accepts (PS3.18 §8.7).

The caller's preferences come as :class:`~.requests.Accepted` (groups of
:class:`~.requests.Acceptable`, the most binding first); what can be produced depends on the
instances, so the choice is made here, once they are known:

* instances (the "DICOM instance" category, §8.7.8.1, NEG-02/06/11): the highest ``q`` wins;
  on equal ``q`` the transfer syntax that sends the most instances, then the one that transcodes
  the fewest. A syntax that sends none is dropped; 406 when nothing is left.
* frames (§8.7.3.3, Table 8.7.3-5; FRM-02/05, NEG-12): the stored frames (native ones little
  endian, FRM-03; compressed ones labelled with their Table 8.7.3-5 type), or native Explicit VR
  Little Endian frames decoded from compressed ones. The highest ``q`` wins; on equal ``q``, a
  representation without decoding.
* bulk data (Table 8.7.3-4; BULK-01/02): ``application/octet-stream``, or the MIME type of an
  Encapsulated Document; wildcards mean the latter.

In every category a ``whole`` representation (the value alone, NEG-11) is only for a single
value. Refusals name what would have been acceptable, as media types.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from app.dicom.uids import EXPLICIT_VR_LITTLE_ENDIAN
from app.errors import NotAcceptable
from app.services.retrieve.requests import Acceptable, Accepted

__all__ = [
    "ANY_TRANSFER_SYNTAX",
    "DICOM",
    "FRAME_MEDIA_TYPES",
    "OCTET_STREAM",
    "BulkRepresentation",
    "FrameRepresentation",
    "choose_bulk",
    "choose_frames",
    "choose_syntax",
    "stored_frames",
]

DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"
ANY_TRANSFER_SYNTAX = "*"


def _by_weight(group: Iterable[Acceptable]) -> list[Acceptable]:
    """``group`` highest ``q`` first, ties in the caller's order."""
    return sorted(group, key=lambda a: -a.q)


# --- instances (§8.7.8.1, NEG-02/06/11) ---


def choose_syntax(
    accepted: Accepted,
    *,
    whole: bool,
    producible: Callable[[str | None], tuple[int, int]],
) -> Acceptable:
    """The representation of a retrieve of instances, or :class:`NotAcceptable` (406).

    ``whole`` allows the instance alone (``application/dicom``, a single instance, NEG-11).
    ``producible(transfer_syntax)`` says how many of the target's instances can be sent for that
    syntax and how many of those need transcoding.

    >>> accepted = Accepted.of(Acceptable(DICOM, "1.2.840.10008.1.2.4.50"), Acceptable(DICOM))
    >>> chosen = choose_syntax(accepted, whole=False, producible=lambda s: (1, 0) if s else (2, 1))
    >>> chosen.media_type, chosen.transfer_syntax
    ('application/dicom', None)
    """
    if not accepted.groups:
        raise NotAcceptable(accepted.unnamed)
    unproducible: list[str] = []
    for group in accepted.groups:
        best: tuple[tuple[float, int, int], Acceptable] | None = None
        for acceptable in _by_weight(group):
            if acceptable.whole and not whole:
                continue
            count, transcoded = producible(acceptable.transfer_syntax)
            if count == 0:
                unproducible.append(
                    acceptable.transfer_syntax or f"{EXPLICIT_VR_LITTLE_ENDIAN} (the default)"
                )
                continue
            rank = (acceptable.q, count, -transcoded)
            if best is None or rank > best[0]:
                best = (rank, acceptable)
        if best is not None:
            return best[1]
    if unproducible:
        asked = ", ".join(dict.fromkeys(unproducible))
        raise NotAcceptable(
            f"no instance can be returned in transfer syntax {asked}: Lightbox sends the stored "
            f"syntax (transfer-syntax=*) or decodes to {EXPLICIT_VR_LITTLE_ENDIAN}"
        )
    raise NotAcceptable(
        'acceptable: multipart/related; type="application/dicom"[; transfer-syntax=UID|*]'
        + (", application/dicom[; transfer-syntax=UID|*]" if whole else "")
    )


# --- frames (§8.7.3.3, Table 8.7.3-5; FRM-02/05, NEG-12) ---

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
    decoded from the stored (compressed) frames, and alone or in a multipart body (NEG-11)."""

    media_type: str
    transfer_syntax: str
    decode: bool = False
    whole: bool = False

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


def choose_frames(
    accepted: Accepted,
    stored: str,
    *,
    native: bool,
    as_stored: bool = True,
    decodable: bool = False,
    whole: bool = False,
    refusal: str | None = None,
) -> FrameRepresentation:
    """The representation of frames stored in ``stored``, or :class:`NotAcceptable` (FRM-05).

    The stored frames when ``as_stored``; native Explicit VR Little Endian frames, ``decode``-d
    from compressed ones when ``decodable``. ``whole`` allows a frame alone (one frame,
    NEG-11). ``refusal`` says why the frames cannot be decoded (the decode limits); the 406
    gives it.

    >>> wanted = Accepted.of(Acceptable(OCTET_STREAM))
    >>> choose_frames(wanted, "1.2.840.10008.1.2.4.90", native=False, decodable=True).decode
    True
    """
    if not accepted.groups:
        raise NotAcceptable(accepted.unnamed)
    stored_rep = stored_frames(stored, native=native) if as_stored else None
    decoded_rep: FrameRepresentation | None = None
    if native and stored_rep is not None:
        decoded_rep = stored_rep
    elif native or decodable:
        decoded_rep = FrameRepresentation(OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN, decode=True)
    for group in accepted.groups:
        best: tuple[tuple[float, bool], FrameRepresentation] | None = None
        for acceptable in group:
            if acceptable.whole and not whole:
                continue
            rep = _frame_match(
                acceptable.media_type, acceptable.transfer_syntax, stored_rep, decoded_rep
            )
            if rep is None:
                continue
            rank = (acceptable.q, not rep.decode)
            if best is None or rank > best[0]:
                best = (rank, replace(rep, whole=acceptable.whole))
        if best is not None:
            return best[1]
    acceptable_here = ['multipart/related; type="application/octet-stream"'] if decoded_rep else []
    if stored_rep is not None and stored_rep.media_type != OCTET_STREAM:
        acceptable_here.append(
            f'multipart/related; type="{stored_rep.media_type}"; transfer-syntax={stored}'
        )
    if stored_rep is not None:
        acceptable_here.append(
            'multipart/related; type="application/octet-stream"; transfer-syntax=*'
        )
    why = "" if decoded_rep else f" (frames in {stored} cannot be decoded here)"
    if refusal is not None:
        why = f" ({refusal})"
    raise NotAcceptable("acceptable: " + ", ".join(acceptable_here) + why)


# --- bulk data (Table 8.7.3-4; BULK-01/02, NEG-11) ---


@dataclass(frozen=True, slots=True)
class BulkRepresentation:
    """How a bulk data value is sent: its media type, alone or in a multipart body."""

    media_type: str
    whole: bool = False


def _bulk_media_type(essence: str, natural: str) -> str | None:
    if essence in (OCTET_STREAM, natural):
        return essence
    kind, _, subtype = essence.partition("/")
    if essence == "*/*" or (subtype == "*" and natural.startswith(f"{kind}/")):
        return natural
    return None


def choose_bulk(accepted: Accepted, natural: str = OCTET_STREAM) -> BulkRepresentation:
    """The representation of a bulk data value whose own type is ``natural``, or 406.

    The value can be labelled ``application/octet-stream`` (always) or ``natural`` (the MIME
    Type of Encapsulated Document, BULK-02); wildcards mean ``natural``. The highest ``q`` wins,
    ties in the caller's order.

    >>> choose_bulk(Accepted.of(Acceptable("*/*")), "application/pdf")
    BulkRepresentation(media_type='application/pdf', whole=False)
    """
    if not accepted.groups:
        raise NotAcceptable(accepted.unnamed)
    for group in accepted.groups:
        best: tuple[float, BulkRepresentation] | None = None
        for acceptable in group:
            media = _bulk_media_type(acceptable.media_type, natural)
            if media is not None and (best is None or acceptable.q > best[0]):
                best = (acceptable.q, BulkRepresentation(media, acceptable.whole))
        if best is not None:
            return best[1]
    types = dict.fromkeys((OCTET_STREAM, natural))
    raise NotAcceptable(
        "acceptable: "
        + ", ".join(f'multipart/related; type="{t}"' for t in types)
        + ", "
        + ", ".join(types)
    )

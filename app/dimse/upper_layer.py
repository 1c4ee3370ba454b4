"""The DICOM upper layer's PDUs and DIMSE command sets, as bytes (PS3.8 §9.3, PS3.7 §6.3, §E):
what the associations served on the event loop (:mod:`app.dimse.loop_association`) read and
write.

Only what that path needs: the A-ASSOCIATE-AC and -RJ, A-RELEASE-RP and A-ABORT it sends, the
P-DATA-TF PDUs it reads and writes (fragmented to the peer's maximum PDU), and command sets
(group 0000, always Implicit VR Little Endian). The A-ASSOCIATE-RQ is decoded by pynetdicom's
PDU classes, which the rest of the DIMSE front end already trusts with every association
(:func:`decode_request`).

Everything read is checked against the bytes actually there: a length that points past its PDU,
a command set larger than :data:`MAX_COMMAND_BYTES`, raise :class:`ProtocolError`, and the
association is aborted.
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    AsynchronousOperationsWindowNegotiation,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    UserIdentityNegotiation,
)

__all__ = [
    "ABORT",
    "ASSOCIATE_RQ",
    "MAX_COMMAND_BYTES",
    "P_DATA",
    "RELEASE_RP",
    "RELEASE_RQ",
    "AssociationRequest",
    "ProtocolError",
    "abort_pdu",
    "associate_ac",
    "associate_rj",
    "decode_command",
    "decode_request",
    "encode_command",
    "p_data",
    "p_data_fragments",
    "p_data_pair",
    "pdvs",
    "response_command",
    "ui",
    "us",
]

ASSOCIATE_RQ: Final = 0x01
ASSOCIATE_AC: Final = 0x02
ASSOCIATE_RJ: Final = 0x03
P_DATA: Final = 0x04
RELEASE_RQ: Final = 0x05
RELEASE_RP: Final = 0x06
ABORT: Final = 0x07

#: a PDU's type, reserved byte and length
HEADER: Final = struct.Struct(">BxI")
#: a PDV item's length, presentation context ID and message control header
_PDV: Final = struct.Struct(">IBB")
#: a command element's tag (group, element) and length, Implicit VR Little Endian
_ELEMENT: Final = struct.Struct("<HHI")
_ITEM: Final = struct.Struct(">BxH")

#: a command set is a handful of short elements (a C-STORE-RQ's is ~200 bytes); one larger than
#: this is not a command anyone sends
MAX_COMMAND_BYTES: Final = 65536

#: the DICOM application context (PS3.7 Annex A.2.1)
APPLICATION_CONTEXT: Final = "1.2.840.10008.3.1.1.1"

_RELEASE_RP: Final = HEADER.pack(RELEASE_RP, 4) + b"\x00\x00\x00\x00"


class ProtocolError(Exception):
    """The peer broke the upper layer or DIMSE protocol; the association is aborted."""


@dataclass(frozen=True, slots=True)
class AssociationRequest:
    """What an A-ASSOCIATE-RQ asks for."""

    #: the AE titles as received (16 bytes each; the A-ASSOCIATE-AC returns them unchanged)
    called_raw: bytes
    calling_raw: bytes
    application_context: str
    #: (presentation context ID, abstract syntax, proposed transfer syntaxes), in order
    contexts: tuple[tuple[int, str, tuple[str, ...]], ...]
    #: the largest PDU the requestor receives (0: no limit)
    max_pdu: int
    #: items beyond what a plain storage SCU sends: role selection, user identity, an
    #: asynchronous operations window (their negotiation is left to pynetdicom)
    extended: bool

    @property
    def calling_ae_title(self) -> str:
        return self.calling_raw.decode("ascii", "replace").strip()

    @property
    def called_ae_title(self) -> str:
        return self.called_raw.decode("ascii", "replace").strip()


def decode_request(pdu: bytes) -> AssociationRequest:
    """An A-ASSOCIATE-RQ PDU (header included); :class:`ProtocolError` if it is not one."""
    if len(pdu) < 74 or pdu[0] != ASSOCIATE_RQ or HEADER.unpack_from(pdu)[1] != len(pdu) - 6:
        raise ProtocolError("not an A-ASSOCIATE-RQ")
    if pdu[6:8] != b"\x00\x01":
        raise ProtocolError("unsupported protocol version")
    request = A_ASSOCIATE_RQ()
    try:
        request.decode(pdu)
        primitive = request.to_primitive()
    except Exception as exc:  # pynetdicom's decoder raises whatever the bytes provoke
        raise ProtocolError(f"undecodable A-ASSOCIATE-RQ: {exc}") from exc
    max_pdu = 0
    extended = False
    for item in primitive.user_information:
        if isinstance(item, MaximumLengthNotification):
            max_pdu = int(item.maximum_length_received or 0)
        elif isinstance(
            item,
            SCP_SCU_RoleSelectionNegotiation
            | UserIdentityNegotiation
            | AsynchronousOperationsWindowNegotiation,
        ):
            extended = True
    contexts = tuple(
        (
            int(cx.context_id or 0),
            str(cx.abstract_syntax or ""),
            tuple(str(ts) for ts in cx.transfer_syntax),
        )
        for cx in primitive.presentation_context_definition_list
    )
    return AssociationRequest(
        called_raw=pdu[10:26],
        calling_raw=pdu[26:42],
        application_context=str(primitive.application_context_name or ""),
        contexts=contexts,
        max_pdu=max_pdu,
        extended=extended,
    )


def _item(kind: int, value: bytes) -> bytes:
    return _ITEM.pack(kind, len(value)) + value


def associate_ac(
    request: AssociationRequest,
    results: list[tuple[int, int, str]],
    *,
    max_pdu: int,
    implementation_uid: str,
    implementation_version: str,
) -> bytes:
    """The A-ASSOCIATE-AC for ``request``: ``results`` are (context ID, result, transfer
    syntax) per proposed context (PS3.8 §9.3.3)."""
    items = [_item(0x10, APPLICATION_CONTEXT.encode())]
    for context_id, result, syntax in results:
        body = bytes([context_id, 0, result, 0]) + _item(0x40, syntax.encode())
        items.append(_item(0x21, body))
    user = (
        _item(0x51, struct.pack(">I", max_pdu))
        + _item(0x52, implementation_uid.encode())
        + _item(0x55, implementation_version.encode())
    )
    items.append(_item(0x50, user))
    body = b"\x00\x01\x00\x00" + request.called_raw + request.calling_raw + bytes(32)
    body += b"".join(items)
    return HEADER.pack(ASSOCIATE_AC, len(body)) + body


def associate_rj(result: int, source: int, reason: int) -> bytes:
    """An A-ASSOCIATE-RJ (PS3.8 §9.3.4)."""
    return HEADER.pack(ASSOCIATE_RJ, 4) + bytes([0, result, source, reason])


def release_rp() -> bytes:
    return _RELEASE_RP


def abort_pdu(source: int = 2, reason: int = 0) -> bytes:
    """An A-ABORT: by the service user (0) or provider (2) and the provider's reason."""
    return HEADER.pack(ABORT, 4) + bytes([0, 0, source, reason])


def pdvs(body: bytes | memoryview) -> Iterator[tuple[int, int, memoryview]]:
    """The PDV items of a P-DATA-TF PDU's body: (context ID, control header, value)."""
    view = memoryview(body)
    offset, end = 0, len(view)
    while offset < end:
        if end - offset < _PDV.size:
            raise ProtocolError("truncated PDV item")
        length, context_id, control = _PDV.unpack_from(view, offset)
        if length < 2 or offset + 4 + length > end:
            raise ProtocolError("a PDV item's length points past its PDU")
        yield context_id, control, view[offset + 6 : offset + 4 + length]
        offset += 4 + length


def p_data(context_id: int, control: int, value: bytes) -> bytes:
    """A P-DATA-TF PDU of one PDV item (a command set fits in any peer's PDU)."""
    pdv = _PDV.pack(len(value) + 2, context_id, control) + value
    return HEADER.pack(P_DATA, len(pdv)) + pdv


def p_data_pair(context_id: int, command: bytes, data_set: bytes) -> bytes:
    """A whole message in one P-DATA-TF PDU: its command set and its data set as two PDV items
    (PS3.8 §9.3.5: a PDU holds one or more PDVs; a message's fragments stay in order)."""
    first = _PDV.pack(len(command) + 2, context_id, 0x03)
    second = _PDV.pack(len(data_set) + 2, context_id, 0x02)
    length = 2 * _PDV.size + len(command) + len(data_set)
    return b"".join((HEADER.pack(P_DATA, length), first, command, second, data_set))


def p_data_fragments(context_id: int, command: bool, value: bytes, max_pdu: int) -> Iterator[bytes]:
    """A command set or data set as P-DATA-TF PDUs of one PDV each, none larger than the peer's
    ``max_pdu`` (0: no limit): a PDV's value is at most ``max_pdu - 6`` bytes (PS3.8 §9.3.5,
    Annex D.1: the limit is on the PDU's variable field, which holds the PDV item's length,
    context ID and control header)."""
    room = max_pdu - 6 if max_pdu else len(value)
    room = max(1, room)
    kind = 0x01 if command else 0x00
    end = len(value)
    offset = 0
    while True:
        chunk = value[offset : offset + room]
        offset += len(chunk)
        yield p_data(context_id, kind | (0x02 if offset >= end else 0x00), chunk)
        if offset >= end:
            return


def response_command(
    command_field: int,
    message_id: int,
    sop_class: str,
    status: int,
    *,
    data_set: bool = False,
    comment: str | None = None,
    offending: tuple[int, ...] = (),
    sop_uid: str | None = None,
) -> bytes:
    """A response's command set (PS3.7 §9.3, §E.1): the elements in ascending order, the
    ErrorComment (LO) and OffendingElement (AT) when given, CommandDataSetType 0x0001 when a
    data set (a C-FIND match) follows."""
    elements = [(0x0002, ui(sop_class))] if sop_class else []
    elements += [
        (0x0100, us(command_field)),
        (0x0120, us(message_id)),  # Message ID Being Responded To
        (0x0800, us(0x0001 if data_set else 0x0101)),
        (0x0900, us(status)),
    ]
    if offending:
        elements.append(
            (0x0901, b"".join(struct.pack("<HH", t >> 16, t & 0xFFFF) for t in offending))
        )
    if comment is not None:
        elements.append((0x0902, lo(comment)))
    if sop_uid:
        elements.append((0x1000, ui(sop_uid)))
    return encode_command(elements)


def decode_command(data: bytes | bytearray) -> dict[int, bytes]:
    """A command set's elements by tag (``0x00000100`` ...), values as encoded."""
    elements: dict[int, bytes] = {}
    view = memoryview(data)
    offset, end = 0, len(view)
    while offset < end:
        if end - offset < _ELEMENT.size:
            raise ProtocolError("truncated command element")
        group, element, length = _ELEMENT.unpack_from(view, offset)
        offset += _ELEMENT.size
        if group != 0 or length > end - offset:
            raise ProtocolError("malformed command set")
        elements[element] = bytes(view[offset : offset + length])
        offset += length
    return elements


def encode_command(elements: list[tuple[int, bytes]]) -> bytes:
    """A command set of ``elements`` (element number, encoded value; ascending), with its
    Command Group Length (0000,0000)."""
    body = b"".join(_ELEMENT.pack(0, element, len(value)) + value for element, value in elements)
    return _ELEMENT.pack(0, 0, 4) + struct.pack("<I", len(body)) + body


def us(value: int) -> bytes:
    return struct.pack("<H", value)


def ui(value: str) -> bytes:
    """A UI value, padded to even length with a NUL (PS3.5 §6.2)."""
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def lo(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def text(value: bytes) -> str:
    """A UI / AE command value as text (padding stripped)."""
    return value.decode("ascii", "replace").rstrip("\x00 ").strip()


def unsigned(value: bytes) -> int:
    """A US command value; :class:`ProtocolError` if it is not two bytes."""
    if len(value) != 2:
        raise ProtocolError("a US command element is not 2 bytes long")
    return int.from_bytes(value, "little")

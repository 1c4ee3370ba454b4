"""A DICOM upper-layer peer written by hand (PS3.8 §9.3): what no well-behaved library sends
on purpose, such as a C-STORE cut off in the middle of its data set."""

import socket
import struct
from dataclasses import dataclass
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

_APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"


def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(payload)) + payload


def _pad(title: str) -> bytes:
    return title.encode("ascii").ljust(16)


def associate_rq(
    calling: str,
    called: str,
    abstract: str,
    syntax: str,
    max_pdu: int = 16384,
    also: tuple[str, ...] = (),
) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing ``abstract`` in ``syntax`` (context ID 1), then each of
    ``also`` in Implicit VR Little Endian (IDs 3, 5 ...)."""
    context = b"".join(
        _item(
            0x20,
            struct.pack(">BBBB", context_id, 0, 0, 0)
            + _item(0x30, proposed.encode())
            + _item(0x40, transfer.encode()),
        )
        for context_id, (proposed, transfer) in zip(
            range(1, 256, 2),
            [(abstract, syntax), *((other, "1.2.840.10008.1.2") for other in also)],
            strict=False,
        )
    )
    user = _item(0x50, _item(0x51, struct.pack(">I", max_pdu)))
    body = (
        struct.pack(">HH", 1, 0)
        + _pad(called)
        + _pad(calling)
        + bytes(32)
        + _item(0x10, _APPLICATION_CONTEXT)
        + context
        + user
    )
    return struct.pack(">BxI", 0x01, len(body)) + body


def p_data(fragment: bytes, *, command: bool, last: bool, context_id: int = 1) -> bytes:
    """A P-DATA-TF PDU with one PDV."""
    control = (0x01 if command else 0x00) | (0x02 if last else 0x00)
    pdv = struct.pack(">IBB", len(fragment) + 2, context_id, control) + fragment
    return struct.pack(">BxI", 0x04, len(pdv)) + pdv


def implicit_le(ds: Dataset) -> bytes:
    """A data set in Implicit VR Little Endian."""
    body = DicomBytesIO()
    body.is_implicit_VR = True
    body.is_little_endian = True
    write_dataset(body, ds)
    return body.getvalue()


def command_set(**elements: object) -> bytes:
    """A command set of ``elements`` (keywords), with its group length."""
    command = Dataset()
    for keyword, value in elements.items():
        setattr(command, keyword, value)
    encoded = implicit_le(command)
    return b"\x00\x00\x00\x00\x04\x00\x00\x00" + struct.pack("<I", len(encoded)) + encoded


def c_store_command(sop_class: str, sop_uid: str, message_id: int = 1) -> bytes:
    """A C-STORE-RQ command set (Implicit VR Little Endian, with its group length)."""
    return command_set(
        AffectedSOPClassUID=sop_class,
        CommandField=0x0001,
        MessageID=message_id,
        Priority=0,
        CommandDataSetType=0x0000,
        AffectedSOPInstanceUID=sop_uid,
    )


def c_find_command(sop_class: str, message_id: int = 1) -> bytes:
    """A C-FIND-RQ command set, an identifier to follow."""
    return command_set(
        AffectedSOPClassUID=sop_class,
        CommandField=0x0020,
        MessageID=message_id,
        Priority=0,
        CommandDataSetType=0x0000,
    )


def c_cancel_command(message_id: int) -> bytes:
    """A C-CANCEL-RQ for the request ``message_id``."""
    return command_set(
        CommandField=0x0FFF, MessageIDBeingRespondedTo=message_id, CommandDataSetType=0x0101
    )


A_ABORT = struct.pack(">BxIxxBB", 0x07, 4, 0, 0)
A_RELEASE_RQ = struct.pack(">BxIxxxx", 0x05, 4)


@dataclass
class RawPeer:
    """An open connection that has been accepted for one presentation context."""

    sock: socket.socket

    @classmethod
    def connect(
        cls, port: int, calling: str, abstract: str, syntax: str, also: tuple[str, ...] = ()
    ) -> "RawPeer":
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(associate_rq(calling, "LIGHTBOX", abstract, syntax, also=also))
        kind, _ = read_pdu(sock)
        assert kind == 0x02, f"association not accepted (PDU type {kind})"
        return cls(sock)

    def send(self, pdu: bytes) -> None:
        self.sock.sendall(pdu)

    def receive(self) -> tuple[int, bytes]:
        return read_pdu(self.sock)

    def close(self) -> None:
        self.sock.close()


def read_message(peer: RawPeer) -> tuple[Dataset, bytes | None]:
    """The next DIMSE message from ``peer``: its command set (decoded by pydicom) and its data
    set's bytes, if one came; fragments across PDUs are joined."""
    command = bytearray()
    data = bytearray()
    command_done = False
    while True:
        kind, body = peer.receive()
        assert kind == 0x04, f"expected P-DATA-TF, got PDU type 0x{kind:02X}"
        offset = 0
        while offset < len(body):
            length, _context, control = struct.unpack_from(">IBB", body, offset)
            value = body[offset + 6 : offset + 4 + length]
            offset += 4 + length
            if control & 0x01:
                command += value
                command_done = bool(control & 0x02)
            else:
                data += value
                if control & 0x02:
                    return read_dataset(BytesIO(bytes(command)), True, True), bytes(data)
        if command_done and not data:
            decoded = read_dataset(BytesIO(bytes(command)), True, True)
            if decoded.CommandDataSetType == 0x0101:
                return decoded, None


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    head = _read(sock, 6)
    kind, length = struct.unpack(">BxI", head)
    return kind, _read(sock, length)


def _read(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed by the peer")
        data += chunk
    return bytes(data)

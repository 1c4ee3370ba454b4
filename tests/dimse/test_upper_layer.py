"""app/dimse/upper_layer.py: the PDUs and command sets of the loop's storage path, checked against
pynetdicom's own codecs (a peer's view), and what it refuses to read."""

import struct
from typing import Any

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.dsutils import decode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)

from app.dimse.loop_association import negotiate
from app.dimse.upper_layer import (
    ProtocolError,
    associate_ac,
    associate_rj,
    decode_command,
    decode_request,
    encode_command,
    pdvs,
    ui,
    us,
)
from tests.dimse.raw import associate_rq, c_store_command

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
JPEG_LS = "1.2.840.10008.1.2.4.80"


def _pynetdicom_rq(calling: str, ae: AE, max_pdu: int, *extra: Any) -> bytes:
    """An A-ASSOCIATE-RQ as pynetdicom encodes it: ``ae``'s requested contexts (IDs 1, 3 ...),
    our maximum length, and the user information items ``extra``."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = "LIGHTBOX"
    length = MaximumLengthNotification()
    length.maximum_length_received = max_pdu
    primitive.user_information = [length, *extra]
    contexts = []
    for index, cx in enumerate(ae.requested_contexts):
        cx.context_id = 2 * index + 1
        contexts.append(cx)
    primitive.presentation_context_definition_list = contexts
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def _modality_rq() -> bytes:
    """CT in two syntaxes, MR in JPEG-LS only, and a Query/Retrieve context."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CT, [JPEG_LS, EXPLICIT])
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4", [JPEG_LS])
    ae.add_requested_context("1.2.840.10008.5.1.4.1.2.2.1", [IMPLICIT])  # not ours here
    return _pynetdicom_rq("MODALITY", ae, 32768)


def test_a_request_is_read_and_answered_as_pynetdicom_reads_it() -> None:
    request = decode_request(_modality_rq())
    assert request.calling_ae_title == "MODALITY"
    assert request.called_ae_title == "LIGHTBOX"
    assert request.max_pdu == 32768
    assert not request.extended
    supported = {CT: (EXPLICIT, IMPLICIT), "1.2.840.10008.5.1.4.1.1.4": (EXPLICIT,)}
    results = negotiate(request, supported)
    # CT: the requestor's first syntax we take; MR: none of its syntaxes; Q/R: not ours
    assert results == [(1, 0x00, EXPLICIT), (3, 0x04, JPEG_LS), (5, 0x03, IMPLICIT)]
    ac = associate_ac(
        request, results, max_pdu=65536, implementation_uid="1.2.3.4", implementation_version="LB"
    )
    decoded = A_ASSOCIATE_AC()
    decoded.decode(ac)
    primitive = decoded.to_primitive()
    assert primitive.calling_ae_title == "MODALITY"
    accepted = {
        cx.context_id: (cx.result, str(cx.transfer_syntax[0]))
        for cx in primitive.presentation_context_definition_results_list
    }
    assert accepted[1] == (0x00, EXPLICIT)
    assert accepted[3][0] == 0x04
    assert accepted[5][0] == 0x03
    assert primitive.maximum_length_received == 65536
    assert primitive.implementation_class_uid == "1.2.3.4"


def test_role_selection_marks_a_request_extended() -> None:
    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(CT, [EXPLICIT])
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CT
    role.scu_role = False
    role.scp_role = True
    assert decode_request(_pynetdicom_rq("GETSCU", ae, 0, role)).extended


@pytest.mark.parametrize(
    "pdu",
    [
        b"",
        b"\x02\x00\x00\x00\x00\x04\x00\x00\x00\x00",  # an A-ASSOCIATE-AC, not a request
        associate_rq("A", "B", CT, EXPLICIT)[:-10],  # truncated: its length says more
        b"\x01\x00" + struct.pack(">I", 68) + b"\x00\x02" + bytes(66),  # protocol version 2
        # an item whose length points past the PDU
        b"\x01\x00"
        + struct.pack(">I", 80)
        + b"\x00\x01"
        + bytes(68)
        + b"\x10\x00\xff\xff"
        + b"x" * 6,
    ],
)
def test_what_is_not_a_request_is_refused(pdu: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_request(pdu)


def test_a_command_set_round_trips_through_pydicom() -> None:
    sop = generate_uid()
    encoded = encode_command(
        [
            (0x0002, ui(CT)),
            (0x0100, us(0x8001)),
            (0x0120, us(7)),
            (0x0800, us(0x0101)),
            (0x0900, us(0xA900)),
            (0x1000, ui(sop)),
        ]
    )
    from io import BytesIO

    ds = decode(BytesIO(encoded), True, True)
    assert ds.CommandGroupLength == len(encoded) - 12
    assert (ds.CommandField, ds.MessageIDBeingRespondedTo, ds.Status) == (0x8001, 7, 0xA900)
    assert (ds.AffectedSOPClassUID, ds.AffectedSOPInstanceUID) == (CT, sop)
    # and a request as a peer encodes it is read back
    command = decode_command(c_store_command(CT, sop, message_id=9))
    assert int.from_bytes(command[0x0110], "little") == 9
    assert command[0x1000].rstrip(b"\x00").decode() == sop


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x01\x04\x00\x00\x00",  # truncated element
        b"\x08\x00\x00\x01\x02\x00\x00\x00\x01\x00",  # not group 0000
        b"\x00\x00\x00\x01\xff\x00\x00\x00\x01\x00",  # a length past the end
    ],
)
def test_a_malformed_command_set_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_command(data)


@pytest.mark.parametrize(
    "body",
    [
        struct.pack(">IBB", 100, 1, 3) + b"x" * 10,  # an item longer than its PDU
        struct.pack(">IBB", 1, 1, 3),  # shorter than its own header
        b"\x00\x00",  # a truncated item header
    ],
)
def test_a_pdv_that_lies_about_its_length_is_refused(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        list(pdvs(body))


def test_pdvs_are_read_in_order() -> None:
    body = struct.pack(">IBB", 5, 1, 3) + b"abc" + struct.pack(">IBB", 3, 3, 0) + b"z"
    assert [(c, k, bytes(v)) for c, k, v in pdvs(body)] == [(1, 3, b"abc"), (3, 0, b"z")]


def test_a_rejection_is_what_pynetdicom_reads() -> None:
    from pynetdicom.pdu import A_ASSOCIATE_RJ

    pdu = A_ASSOCIATE_RJ()
    pdu.decode(associate_rj(0x02, 0x03, 0x02))
    assert (pdu.result, pdu.source, pdu.reason_diagnostic) == (0x02, 0x03, 0x02)

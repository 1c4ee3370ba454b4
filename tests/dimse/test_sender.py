"""C-STORE of stored bytes as an SCU (app.dimse.sender), against a pynetdicom storage SCP: the
data set arrives byte for byte in fragments within the peer's PDU size, a failure half-way
aborts the association, refusals are told apart; and the contexts proposed for a C-MOVE."""

from collections.abc import Iterator
from typing import Any

import pytest
from pydicom.uid import CTImageStorage, MRImageStorage

from app.config import DimseSettings
from app.dimse.sender import (
    MAX_CONTEXTS,
    AssociationLost,
    DestinationRefused,
    _fragments,
    associate,
    propose_contexts,
    send_stored,
    sending_contexts,
)
from app.services.aes import RemoteAe
from tests.dimse.ports import free_port
from tests.dimse.qr_peers import pynetdicom_storescp
from tests.factories import make_dataset, to_bytes

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
J2K = "1.2.840.10008.1.2.4.90"
SETTINGS = DimseSettings(ae_title="LIGHTBOX", dimse_timeout=5, network_timeout=5)


def test_fragments_mark_the_last_and_respect_the_size() -> None:
    chunks = [b"abcde", b"", b"fghij", b"k"]
    out = list(_fragments(chunks, 4))
    assert [f for f, _ in out] == [b"abcd", b"e", b"fghi", b"j", b"k"]
    assert [last for _, last in out] == [False, False, False, False, True]
    assert list(_fragments([], 4)) == [(b"", True)]


def test_propose_contexts() -> None:
    pairs = [(CTImageStorage, J2K)] * 3 + [(CTImageStorage, IMPLICIT), (MRImageStorage, EXPLICIT)]
    proposed = [(cx.abstract_syntax, tuple(cx.transfer_syntax)) for cx in propose_contexts(pairs)]
    assert proposed == [
        (CTImageStorage, (EXPLICIT, IMPLICIT)),
        (MRImageStorage, (EXPLICIT, IMPLICIT)),
        (CTImageStorage, (J2K,)),
        (CTImageStorage, (IMPLICIT,)),
    ]
    many = [(f"1.2.3.{n}", J2K) for n in range(200)]
    capped = propose_contexts(many)
    assert len(capped) == MAX_CONTEXTS
    assert {tuple(cx.transfer_syntax) for cx in capped} == {(EXPLICIT, IMPLICIT)}


@pytest.fixture
def destination() -> Iterator[tuple[RemoteAe, Any]]:
    port = free_port()
    with pynetdicom_storescp("DEST", port) as received:
        yield RemoteAe("DEST", "127.0.0.1", port), received


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_send_stored_bytes(destination: tuple[RemoteAe, Any]) -> None:
    remote, received = destination
    ds = make_dataset(rows=128, columns=128)
    raw = to_bytes(ds)
    dataset = raw[raw.index(b"\x08\x00\x05\x00") :]  # after the File Meta group
    settings = SETTINGS.model_copy(update={"max_pdu": 4096})
    assoc = associate("LIGHTBOX", remote, propose_contexts([(CTImageStorage, EXPLICIT)]), settings)
    try:
        contexts = sending_contexts(assoc)
        assert assoc.acceptor.maximum_length == 16382  # pynetdicom's default: fragments needed
        status = send_stored(
            assoc,
            contexts[(CTImageStorage, EXPLICIT)],
            str(ds.SOPInstanceUID),
            _chunks(dataset, 10_000),
            message_id=7,
            move_originator=("MOVER", 3),
        )
    finally:
        assoc.release()
    assert status == 0x0000
    [(uid, syntax, data, request)] = received.instances
    assert (uid, syntax, data) == (str(ds.SOPInstanceUID), EXPLICIT, dataset)
    assert (request.MoveOriginatorApplicationEntityTitle, request.MoveOriginatorMessageID) == (
        "MOVER",
        3,
    )


def test_a_failure_half_sent_aborts(destination: tuple[RemoteAe, Any]) -> None:
    remote, received = destination

    def failing() -> Iterator[bytes]:
        yield b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100"
        raise OSError("the blob went away")

    assoc = associate("LIGHTBOX", remote, propose_contexts([(CTImageStorage, EXPLICIT)]), SETTINGS)
    with pytest.raises(AssociationLost, match="could not be read"):
        send_stored(
            assoc,
            sending_contexts(assoc)[(CTImageStorage, EXPLICIT)],
            "1.2.3",
            failing(),
            message_id=1,
        )
    assert assoc.is_aborted
    assert received.instances == []


# pynetdicom 3.0 leaves the socket of a refused TCP connection unclosed (its shutdown() of the
# unconnected socket raises first, so its close() never runs): the ResourceWarning is its own
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_unreachable_destination() -> None:
    nobody = RemoteAe("NOBODY", "127.0.0.1", free_port())
    with pytest.raises(DestinationRefused, match="no association with NOBODY"):
        associate("LIGHTBOX", nobody, propose_contexts([(CTImageStorage, EXPLICIT)]), SETTINGS)

"""UID validation (PS3.5 §9.1) and transfer-syntax groups."""

import pytest

from app.dicom import uids
from app.errors import BadRequest


@pytest.mark.parametrize(
    "uid", ["1.2.840.10008.1.2.1", "0", "1.0.3", "2.25." + "9" * 39, "1." + "2" * 62]
)
def test_valid_uids(uid: str) -> None:
    assert uids.is_valid_uid(uid)


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "../../x",
        "1.02",
        "01.2",
        "1..2",
        ".1.2",
        "1.2.",
        "1.2.3a",
        "1 .2",
        "1." + "2" * 63,
        "\u0661.\u0662",
    ],
)
def test_invalid_uids(uid: str) -> None:
    assert not uids.is_valid_uid(uid)
    with pytest.raises(BadRequest, match="StudyInstanceUID"):
        uids.validate_uid(uid, "StudyInstanceUID")


def test_length_limit_is_64() -> None:
    assert uids.is_valid_uid("1." + "2" * 62)  # 64 characters
    assert not uids.is_valid_uid("1." + "2" * 63)  # 65 characters


def test_non_strings_are_invalid() -> None:
    assert not uids.is_valid_uid(None)
    assert not uids.is_valid_uid(1.2)


def test_transfer_syntax_groups_are_disjoint_and_known() -> None:
    groups = [uids.NATIVE, uids.DEFLATED, uids.REFERENCED, uids.ENCAPSULATED]
    assert sum(len(g) for g in groups) == len(uids.KNOWN_TRANSFER_SYNTAXES)
    assert uids.VIDEO <= uids.ENCAPSULATED
    assert all(uids.is_valid_uid(uid) for uid in uids.KNOWN_TRANSFER_SYNTAXES)


def test_pydicom_compressed_syntaxes_are_encapsulated() -> None:
    from pydicom.uid import (
        JPEG2000TransferSyntaxes,
        JPEGLSTransferSyntaxes,
        JPEGTransferSyntaxes,
        MPEGTransferSyntaxes,
        RLETransferSyntaxes,
    )

    for uid in [
        *JPEGTransferSyntaxes,
        *JPEGLSTransferSyntaxes,
        *JPEG2000TransferSyntaxes,
        *MPEGTransferSyntaxes,
        *RLETransferSyntaxes,
    ]:
        assert uid in uids.ENCAPSULATED, uid
    assert uids.is_known_transfer_syntax("1.2.840.10008.1.2.1.99")
    assert not uids.is_known_transfer_syntax("1.2.3.4.5")

"""The DIMSE listener (DIMSE-01, 02, 14): C-ECHO, presentation contexts, the allow-list, the
association limit and TLS, against DCMTK's echoscu and pynetdicom as requestors."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE

from app.config import AllowedPeer
from tests.dimse.certs import Authority
from tests.dimse.conftest import Running, calling_ae, dcmtk, dimse_settings, running

Verification = "1.2.840.10008.1.1"


def echoscu(port: int, ae_title: str, *extra: str) -> tuple[int, str]:
    done = dcmtk("echoscu", "-aet", ae_title, "-aec", "LIGHTBOX", *extra, "127.0.0.1", str(port))
    return done.returncode, done.stdout


def test_echoscu_is_answered_success_and_both_are_audited(dimse: Running) -> None:
    """DIMSE-02: C-ECHO answers 0x0000; DIMSE-14: the association and the echo are audited
    with the calling AE title as the actor and the peer's address as the source."""
    title = calling_ae()
    code, out = echoscu(dimse.port, title, "-v")
    assert code == 0, out
    assert "Received Echo Response (Success)" in out
    rows = dimse.audit_rows(title)
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("association", "success"),
        ("echo", "success"),
    ]
    assert {r["source"] for r in rows} == {"127.0.0.1"}
    association, echo = rows
    assert echo["request_id"].startswith(association["request_id"] + ":")
    assert echo["status"] == 0


def test_an_unsupported_abstract_syntax_rejects_its_context_not_the_association(
    dimse: Running,
) -> None:
    ae = AE(ae_title=calling_ae())
    ae.add_requested_context(Verification)
    ae.add_requested_context("1.2.826.0.1.3680043.10.1234.99")  # no such SOP class here
    assoc = ae.associate("127.0.0.1", dimse.port, ae_title="LIGHTBOX")
    try:
        assert assoc.is_established
        [rejected] = assoc.rejected_contexts
        assert rejected.abstract_syntax == "1.2.826.0.1.3680043.10.1234.99"
        assert rejected.result == 0x03  # abstract syntax not supported (PS3.8 Table 9-18)
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def test_compressed_storage_contexts_are_accepted_in_their_own_syntax(dimse: Running) -> None:
    """DIMSE-04: pynetdicom's defaults hold four syntaxes; we accept the compressed ones too."""
    ae = AE(ae_title=calling_ae())
    proposed = {
        "1.2.840.10008.1.2.4.50": "1.2.840.10008.5.1.4.1.1.7",  # JPEG Baseline, SC
        "1.2.840.10008.1.2.4.90": "1.2.840.10008.5.1.4.1.1.2",  # J2K lossless, CT
        "1.2.840.10008.1.2.4.201": "1.2.840.10008.5.1.4.1.1.4",  # HTJ2K lossless, MR
        "1.2.840.10008.1.2.5": "1.2.840.10008.5.1.4.1.1.6.1",  # RLE, US
        "1.2.840.10008.1.2.4.102": "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # H.264, video endo
        "1.2.840.10008.1.2.4.112": "1.2.840.10008.5.1.4.1.1.1.2",  # JPEG XL, MG
    }
    for syntax, sop_class in proposed.items():
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", dimse.port, ae_title="LIGHTBOX")
    try:
        accepted = {cx.transfer_syntax[0] for cx in assoc.accepted_contexts}
        assert accepted == set(proposed)
    finally:
        assoc.release()


@pytest.fixture
def guarded(database_url: str, tmp_path: Path) -> Iterator[Running]:
    settings = dimse_settings(
        database_url,
        tmp_path / "data",
        allowed_peers=[
            AllowedPeer(ae_title="MODALITY1", address="127.0.0.0/8"),
            AllowedPeer(ae_title="REMOTE1", address="10.20.0.0/16"),
        ],
    )
    with running(settings) as server:
        yield server


def test_the_allow_list_rejects_unknown_callers_and_audits_them(guarded: Running) -> None:
    """DIMSE-01/14: off the list, A-ASSOCIATE-RJ (permanent, calling AE title not recognized),
    audited as denied; on it, served."""
    code, out = echoscu(guarded.port, "MODALITY1")
    assert code == 0, out
    intruder = calling_ae()
    code, out = echoscu(guarded.port, intruder)
    assert code != 0
    assert "Association Rejected" in out
    assert "Calling AE Title Not Recognized" in out
    # the right title from the wrong address is not let in either
    code, out = echoscu(guarded.port, "REMOTE1")
    assert "Calling AE Title Not Recognized" in out
    [denied] = guarded.audit_rows(intruder)
    assert (denied["action"], denied["outcome"], denied["source"]) == (
        "association",
        "denied",
        "127.0.0.1",
    )
    assert "allow-list" in denied["detail"]
    assert [r["outcome"] for r in guarded.audit_rows("REMOTE1")] == ["denied"]


def test_associations_beyond_the_limit_are_rejected_and_audited(
    database_url: str, tmp_path: Path
) -> None:
    with running(dimse_settings(database_url, tmp_path / "data", max_associations=1)) as server:
        ae = AE(ae_title=calling_ae())
        ae.add_requested_context(Verification)
        held = ae.associate("127.0.0.1", server.port, ae_title="LIGHTBOX")
        try:
            assert held.is_established
            second = calling_ae()
            code, out = echoscu(server.port, second)
            assert code != 0
            assert "Local Limit Exceeded" in out
            [row] = server.audit_rows(second)
            assert row["outcome"] == "denied"
            assert "too many associations" in row["detail"]
        finally:
            held.release()
        code, out = echoscu(server.port, calling_ae())
        assert code == 0, out


def test_tls_with_client_certificates(database_url: str, tmp_path: Path) -> None:
    """DIMSE-01 (PS3.15 B.1): over TLS, a caller whose certificate chains to our CA is served;
    one in the clear, or with a certificate of another CA, is not."""
    ca = Authority.create(tmp_path / "pki")
    ours = ca.issue(tmp_path / "pki", "lightbox")
    modality = ca.issue(tmp_path / "pki", "modality")
    stranger = Authority.create(tmp_path / "other", "Other CA").issue(tmp_path / "other", "x")
    settings = dimse_settings(
        database_url,
        tmp_path / "data",
        tls_cert=ours.cert,
        tls_key=ours.key,
        tls_ca=ca.pair.cert,
    )
    with running(settings) as server:
        title = calling_ae()
        tls = ("+tls", str(modality.key), str(modality.cert), "+cf", str(ca.pair.cert))
        code, out = echoscu(server.port, title, *tls)
        assert code == 0, out
        assert [r["action"] for r in server.audit_rows(title)] == ["association", "echo"]
        code, out = echoscu(server.port, calling_ae(), "-to", "5")
        assert code != 0  # no TLS: the handshake never completes
        bad = ("+tls", str(stranger.key), str(stranger.cert), "+cf", str(ca.pair.cert))
        code, out = echoscu(server.port, calling_ae(), *bad)
        assert code != 0
        # the listener still serves after those failures
        code, out = echoscu(server.port, calling_ae(), *tls)
        assert code == 0, out

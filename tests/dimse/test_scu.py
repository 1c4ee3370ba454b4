"""Lightbox as a DIMSE client of a real archive (Orthanc 1.10): C-FIND, C-GET of a list of
instances, C-MOVE to a third AE, a cancel that ends a transfer at once, refusals."""

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, evt

from app.dimse import scu
from app.dimse.scu import Cancel, Peer, ScuError, ScuSettings
from tests.dimse.ports import free_port
from tests.factories import make_dataset, to_bytes
from tests.peers.legacy import legacy_orthanc, load
from tests.peers.orthanc import Modality

OURS = ScuSettings("LIGHTBOX", timeout=30)
INSTANCES = 12


class Sink:
    """A storage SCP standing in for a C-MOVE destination."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[str] = []
        ae = AE(ae_title="SINK")
        ae.supported_contexts = AllStoragePresentationContexts
        server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        assert server is not None
        self.server = server

    def _store(self, event: Any) -> int:
        self.received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    sink = Sink()
    yield sink
    sink.server.shutdown()


@pytest.fixture(scope="module")
def study(
    tmp_path_factory: pytest.TempPathFactory, sink: Sink
) -> Iterator[tuple[Peer, str, list[str]]]:
    study_uid, series_uid = generate_uid(), generate_uid()
    datasets = [
        make_dataset(StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid, InstanceNumber=i)
        for i in range(INSTANCES)
    ]
    with legacy_orthanc(
        tmp_path_factory.mktemp("orthanc"), modalities={"sink": Modality("SINK", sink.port)}
    ) as orthanc:
        load(orthanc, [to_bytes(ds) for ds in datasets])
        peer = Peer(orthanc.ae_title, "127.0.0.1", orthanc.dicom_port)
        yield peer, series_uid, [str(ds.SOPInstanceUID) for ds in datasets]


def _at(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_find_lists_the_instances(study: tuple[Peer, str, list[str]]) -> None:
    peer, series, sops = study
    with scu.finder(OURS, peer) as search:
        (found,) = search(_at("SERIES", StudyInstanceUID="", SeriesInstanceUID=series))
        matches = search(
            _at(
                "IMAGE",
                StudyInstanceUID=found.StudyInstanceUID,
                SeriesInstanceUID=series,
                SOPInstanceUID="",
            )
        )
    assert sorted(str(m.SOPInstanceUID) for m in matches) == sorted(sops)


def test_get_brings_exactly_the_instances_asked_for(study: tuple[Peer, str, list[str]]) -> None:
    peer, series, sops = study
    received: list[tuple[str, str]] = []

    def on_store(event: Any) -> int:
        received.append(
            (str(event.request.AffectedSOPInstanceUID), str(event.context.transfer_syntax))
        )
        return 0x0000

    (found,) = scu.find(OURS, peer, _at("SERIES", StudyInstanceUID="", SeriesInstanceUID=series))
    wanted = sops[2:5]
    asked = _at(
        "IMAGE",
        StudyInstanceUID=found.StudyInstanceUID,
        SeriesInstanceUID=series,
        SOPInstanceUID=wanted,
    )
    result = scu.get(OURS, peer, [asked], ["1.2.840.10008.5.1.4.1.1.2"], on_store)
    assert (result.status, result.completed, result.failed) == (0x0000, 3, 0)
    # each in the syntax it is stored in (its own context), not transcoded
    assert sorted(received) == sorted((sop, "1.2.840.10008.1.2.1") for sop in wanted)


def test_move_sends_to_the_destination(study: tuple[Peer, str, list[str]], sink: Sink) -> None:
    peer, series, sops = study
    sink.received.clear()
    study_uid = _study_of(peer, series)
    result = scu.move(
        OURS, peer, [_at("SERIES", StudyInstanceUID=study_uid, SeriesInstanceUID=series)], "SINK"
    )
    assert (result.status, result.completed, result.failed) == (0x0000, INSTANCES, 0)
    assert sorted(sink.received) == sorted(sops)
    unknown = scu.move(
        OURS, peer, [_at("SERIES", StudyInstanceUID=study_uid, SeriesInstanceUID=series)], "NOBODY"
    )
    assert unknown.status not in (None, 0x0000)  # a failure status (Orthanc: 0x%04X)
    assert unknown.completed == 0


def _study_of(peer: Peer, series: str) -> str:
    (found,) = scu.find(OURS, peer, _at("SERIES", StudyInstanceUID="", SeriesInstanceUID=series))
    return str(found.StudyInstanceUID)


def test_a_cancel_ends_a_transfer_at_once(study: tuple[Peer, str, list[str]]) -> None:
    peer, series, _ = study
    cancel = Cancel()
    stores = 0

    def on_store(_event: Any) -> int:
        nonlocal stores
        stores += 1
        if stores == 2:  # from another thread, as a cancelled job does
            threading.Thread(target=cancel).start()
            time.sleep(0.2)
        return 0x0000

    started = time.monotonic()
    with pytest.raises(ScuError, match="sent no C-GET response"):
        scu.get(
            OURS,
            peer,
            [_at("SERIES", StudyInstanceUID=_study_of(peer, series), SeriesInstanceUID=series)],
            ["1.2.840.10008.5.1.4.1.1.2"],
            on_store,
            cancel=cancel,
        )
    assert time.monotonic() - started < OURS.timeout / 2  # not the DIMSE time-out
    assert 2 <= stores < INSTANCES
    with pytest.raises(ScuError, match="cancelled"):  # once cancelled, nothing starts
        scu.find(OURS, peer, _at("STUDY", StudyInstanceUID=""), cancel=cancel)


def test_refusals_say_why(study: tuple[Peer, str, list[str]]) -> None:
    peer, _, _ = study
    closed = Peer("GONE", "127.0.0.1", free_port())
    with pytest.raises(
        ScuError, match=r"cannot reach GONE at 127\.0\.0\.1:\d+: Connection refused"
    ):
        scu.reachable(closed, 5)
    wrong = Peer("NOT-ORTHANC", peer.host, peer.port)
    with pytest.raises(ScuError, match=r"NOT-ORTHANC at .* rejected the association"):
        scu.find(OURS, wrong, _at("STUDY", StudyInstanceUID=""))
    with pytest.raises(ScuError, match=r"failed the C-FIND \(status 0x[AC]"):
        scu.find(OURS, peer, _at("BOGUS", PatientID=""))


def test_contexts_of_many_sop_classes_fit_one_association() -> None:
    classes = [f"1.2.840.10008.5.1.4.1.1.{n}" for n in range(1, 40)]
    contexts = scu.storage_contexts(classes)
    assert len(contexts) <= 127
    for sop_class in classes:  # every class gets every syntax, alone or shared
        syntaxes = [
            ts for cx in contexts if cx.abstract_syntax == sop_class for ts in cx.transfer_syntax
        ]
        assert sorted(syntaxes) == sorted(scu.TRANSFER_SYNTAXES)
    with pytest.raises(ScuError, match="200 SOP classes"):
        scu.storage_contexts([f"1.2.3.{n}" for n in range(200)])

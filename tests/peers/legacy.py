"""Orthanc as the legacy PACS ``lightbox pull`` migrates from (:func:`tests.peers.orthanc.orthanc`
with the configuration of an archive that serves any caller): loaded through its REST API, read
back byte for byte."""

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from pydicom.uid import generate_uid

from tests.dimse.ports import free_port
from tests.factories import make_dataset, to_bytes
from tests.part10 import dataset_bytes
from tests.peers.orthanc import Modality, Orthanc, orthanc
from tests.peers.ports import free_http_port

__all__ = [
    "LEGACY",
    "dataset_bytes",
    "instance_files",
    "legacy_orthanc",
    "load",
    "loaded_legacy",
    "one_series_studies",
    "unused_port",
]

LEGACY: Final = "LEGACY"
#: an archive that answers C-FIND, C-GET and C-MOVE from any calling AE, and checks the called
#: AE title (an association under another title is rejected)
_OPTIONS: Final = {
    "DicomCheckCalledAet": True,
    "DicomAlwaysAllowFind": True,
    "DicomAlwaysAllowGet": True,
    "DicomAlwaysAllowMove": True,
}


@contextmanager
def legacy_orthanc(
    workdir: Path, *, modalities: Mapping[str, Modality] | None = None
) -> Iterator[Orthanc]:
    """A running Orthanc titled ``LEGACY`` on free loopback ports."""
    with orthanc(
        workdir,
        ae_title=LEGACY,
        http_port=free_http_port(),
        dicom_port=free_port(),
        modalities=modalities,
        options=_OPTIONS,
    ) as peer:
        try:
            yield peer
        finally:
            # a throwaway whose storage is discarded: killed, not stopped cleanly (seconds)
            peer.process.kill()
            peer.process.wait()


@contextmanager
def loaded_legacy(workdir: Path, files: list[bytes]) -> Iterator[Orthanc]:
    """:func:`legacy_orthanc` holding ``files``."""
    with legacy_orthanc(workdir) as peer:
        load(peer, files)
        yield peer


def one_series_studies(patients: Iterable[str], per_study: int) -> list[bytes]:
    """PS3.10 files of a study for each patient ID, each of one series of ``per_study`` small
    (64x64) images: a source to migrate."""
    files = []
    for patient in patients:
        study, series = generate_uid(), generate_uid()
        for i in range(per_study):
            ds = make_dataset(
                StudyInstanceUID=study,
                SeriesInstanceUID=series,
                PatientID=patient,
                InstanceNumber=i + 1,
                rows=64,
                columns=64,
            )
            files.append(to_bytes(ds))
    return files


def unused_port() -> int:
    """A loopback port nothing listens on (a source that cannot be reached)."""
    return free_port()


def load(peer: Orthanc, files: list[bytes]) -> None:
    for data in files:
        peer.upload(data)


def instance_files(peer: Orthanc) -> dict[str, bytes]:
    """Every instance the peer holds, as it sends it over REST, by SOP Instance UID."""
    return {peer.sop_uid(i): peer.instance_file(i) for i in peer.instances()}

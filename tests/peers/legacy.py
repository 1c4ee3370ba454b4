"""Orthanc as the legacy PACS ``lightbox pull`` migrates from (:func:`tests.peers.orthanc.orthanc`
with the configuration of an archive that serves any caller): loaded through its REST API, read
back byte for byte."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from tests.dimse.ports import free_port
from tests.peers.orthanc import Modality, Orthanc, orthanc
from tests.peers.ports import free_http_port

__all__ = ["LEGACY", "dataset_bytes", "instance_files", "legacy_orthanc", "load", "unused_port"]

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


def unused_port() -> int:
    """A loopback port nothing listens on (a source that cannot be reached)."""
    return free_port()


def load(peer: Orthanc, files: list[bytes]) -> None:
    for data in files:
        peer.upload(data)


def instance_files(peer: Orthanc) -> dict[str, bytes]:
    """Every instance the peer holds, as it sends it over REST, by SOP Instance UID."""
    return {peer.sop_uid(i): peer.instance_file(i) for i in peer.instances()}


def dataset_bytes(data: bytes) -> bytes:
    """A PS3.10 file's data set: what follows the preamble, "DICM" and the File Meta group
    (whose length its first element, (0002,0000) UL, gives)."""
    if data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        raise ValueError("not a PS3.10 file with a File Meta Information Group Length")
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length :]

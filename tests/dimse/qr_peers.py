"""Peers of the Query/Retrieve tests: DCMTK's findscu, movescu and getscu run once each, its
storescp kept running, and a pynetdicom storage SCP for faults DCMTK cannot script."""

import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread

from tests.dimse.ports import free_port
from tests.part10 import dataset_bytes
from tests.processes import stop

#: how long one DCMTK tool may run in a test
TIMEOUT = 60


@dataclass
class Run:
    """A finished DCMTK tool: its exit code and log, and the data sets it wrote."""

    returncode: int
    log: str
    files: list[Path]

    def datasets(self) -> list[Dataset]:
        return [dcmread(path) for path in self.files]


def _run(command: Sequence[str], output: Path, pattern: str) -> Run:
    output.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        list(command), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    return Run(done.returncode, done.stdout + done.stderr, sorted(output.glob(pattern)))


def findscu(
    port: int,
    output: Path,
    *keys: str,
    root: str = "-S",
    query_file: Path | None = None,
    calling: str = "FINDSCU",
) -> Run:
    """``findscu`` with ``-k`` keys (and a query file); the responses are ``rsp*.dcm``."""
    command = ["findscu", "-v", root, "-aet", calling, "-aec", "LIGHTBOX", "-X", "-od", str(output)]
    for key in keys:
        command += ["-k", key]
    command += ["127.0.0.1", str(port)]
    if query_file is not None:
        command.append(str(query_file))
    return _run(command, output, "rsp*.dcm")


def getscu(port: int, output: Path, *keys: str, root: str = "-S", extra: Sequence[str] = ()) -> Run:
    """``getscu`` with ``-k`` keys; the instances received are written to ``output``."""
    command = ["getscu", "-v", root, "-aet", "GETSCU", "-aec", "LIGHTBOX", "-od", str(output)]
    command += list(extra)
    for key in keys:
        command += ["-k", key]
    command += ["127.0.0.1", str(port)]
    return _run(command, output, "*")


def movescu(
    port: int,
    destination: str,
    *keys: str,
    root: str = "-S",
    workdir: Path,
    calling: str = "MOVESCU",
) -> Run:
    """``movescu`` asking Lightbox to move to ``destination`` (a separate store SCP)."""
    command = ["movescu", "-v", root, "-aet", calling, "-aec", "LIGHTBOX", "-aem", destination]
    for key in keys:
        command += ["-k", key]
    command += ["127.0.0.1", str(port)]
    return _run(command, workdir, "__none__")


@dataclass
class StoreScp:
    """A running DCMTK ``storescp``."""

    ae_title: str
    port: int
    directory: Path
    process: "subprocess.Popen[bytes]"
    log: Path

    def received(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file())


@contextmanager
def storescp(
    directory: Path, ae_title: str = "STORESCP", *options: str, port: int | None = None
) -> Iterator[StoreScp]:
    """``storescp`` on ``port`` (else a free one of the test range), writing what it receives
    to ``directory`` (one file per instance, named by its SOP Instance UID)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = directory.parent / f"{ae_title}.log"
    command = ["storescp", "-v", "-aet", ae_title, "-od", str(directory), "-uf", *options]
    command.append(str(port))
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process)
        yield StoreScp(ae_title, port, directory, process, log)
    finally:
        stop(process, timeout=10)


def _wait_listening(port: int, process: "subprocess.Popen[bytes]") -> None:
    """Until ``port`` is bound (tried by binding it: a connection would be an association
    attempt in the peer's log)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"storescp exited with {process.returncode}")
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise RuntimeError("storescp did not listen")


@dataclass
class Received:
    """What a pynetdicom storage SCP received: per association, the instances (SOP Instance
    UID, transfer syntax, data set bytes as they arrived, C-STORE request)."""

    associations: list[list[tuple[str, str, bytes, Any]]] = field(default_factory=list)

    @property
    def instances(self) -> list[tuple[str, str, bytes, Any]]:
        return [item for assoc in self.associations for item in assoc]


def received_data_set(event: Any) -> bytes:
    """The data set bytes of a C-STORE a pynetdicom SCP received, as they arrived: in memory,
    or (while a Lightbox listener runs in this process: ``app.dimse.receive`` sets pynetdicom's
    process-wide ``STORE_RECV_CHUNKED_DATASET``) in the file pynetdicom wrote them to."""
    data = event.request.DataSet.getvalue() if event.request.DataSet is not None else b""
    if data:
        return bytes(data)
    return dataset_bytes(Path(event.dataset_path).read_bytes())


@contextmanager
def pynetdicom_storescp(
    ae_title: str,
    port: int,
    *,
    abort_at: int | None = None,
    delay: float = 0.0,
    transfer_syntaxes: Sequence[str] | None = None,
) -> Iterator[Received]:
    """A storage SCP for what DCMTK's storescp cannot do: abort its first association at the
    ``abort_at``-th C-STORE (1-based; later associations are served), or take ``delay``
    seconds per instance. Records the raw data set bytes of every instance."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    received = Received()
    lock = threading.Lock()
    seen: dict[int, int] = {}

    def on_store(event: Any) -> int:
        with lock:
            key = id(event.assoc)
            if key not in seen:
                seen[key] = len(received.associations)
                received.associations.append([])
            index = seen[key]
            number = len(received.associations[index]) + 1
        if abort_at is not None and index == 0 and number == abort_at:
            event.assoc.abort()
            return 0xA700
        if delay:
            time.sleep(delay)
        request = event.request
        data = received_data_set(event)
        syntax = str(event.context.transfer_syntax)
        with lock:
            received.associations[index].append(
                (str(request.AffectedSOPInstanceUID), syntax, data, request)
            )
        return 0x0000

    ae = AE(ae_title=ae_title)
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(
            context.abstract_syntax,
            list(transfer_syntaxes or ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]),
        )
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    assert server is not None
    try:
        yield received
    finally:
        server.shutdown()

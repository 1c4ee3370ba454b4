"""DCMTK peers of the DIMSE tests: findscu, movescu, getscu run once each; storescp kept running."""

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread

from tests.dimse.ports import free_port

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


def movescu(port: int, destination: str, *keys: str, root: str = "-S", workdir: Path) -> Run:
    """``movescu`` asking Lightbox to move to ``destination`` (a separate store SCP)."""
    command = ["movescu", "-v", root, "-aet", "MOVESCU", "-aec", "LIGHTBOX", "-aem", destination]
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
def storescp(directory: Path, ae_title: str = "STORESCP", *options: str) -> Iterator[StoreScp]:
    """``storescp`` on a free port of the test range, writing what it receives to
    ``directory`` (one file per instance, named by its SOP Instance UID)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory.parent / f"{ae_title}.log"
    command = ["storescp", "-v", "-aet", ae_title, "-od", str(directory), "-uf", *options]
    command.append(str(port))
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process)
        yield StoreScp(ae_title, port, directory, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_listening(port: int, process: "subprocess.Popen[bytes]") -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"storescp exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("storescp did not listen")

"""DCMTK as the peer: storescu over many files (each proposed in its own transfer syntax, on
several associations at once) and storescp as the reference receiver (``+B``: the data sets
written exactly as they arrived)."""

import re
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

IMPLICIT = "1.2.840.10008.1.2"


@dataclass(frozen=True)
class Sendable:
    """A file storescu can send: its SOP class, instance and transfer syntax."""

    path: Path
    sop_class: str
    sop_uid: str
    transfer_syntax: str


def sendable(paths: Sequence[Path]) -> list[Sendable]:
    """The files of ``paths`` that are DICOM with a SOP class and instance."""
    found = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
            continue
        meta = getattr(ds, "file_meta", None)
        sop_class = str(
            ds.get("SOPClassUID", "") or (meta or {}).get("MediaStorageSOPClassUID", "")
        )
        sop_uid = str(ds.get("SOPInstanceUID", "") or "")
        syntax = str((meta or {}).get("TransferSyntaxUID", "") or IMPLICIT)
        if path.name == "DICOMDIR" or not sop_class or not sop_uid:
            continue
        found.append(Sendable(path, sop_class, sop_uid, syntax))
    return found


def storescu_profile(files: Sequence[Sendable], directory: Path, name: str) -> Path:
    """A storescu configuration whose profile proposes, for each (SOP class, transfer syntax) of
    ``files``, a context of its own: each file goes in its own syntax, never converted."""
    syntaxes = sorted({f.transfer_syntax for f in files})
    key = {ts: f"TS{i}" for i, ts in enumerate(syntaxes)}
    pairs = sorted({(f.sop_class, f.transfer_syntax) for f in files})
    assert len(pairs) <= 128, "one association proposes at most 128 contexts (PS3.8 9.3.2.2)"
    lines = ["[[TransferSyntaxes]]"]
    for ts in syntaxes:
        lines += [f"[{key[ts]}]", f"TransferSyntax1 = {ts}"]
    lines += ["[[PresentationContexts]]", "[Contexts]"]
    lines += [
        f"PresentationContext{i} = {sop_class}\\{key[ts]}"
        for i, (sop_class, ts) in enumerate(pairs, 1)
    ]
    lines += ["[[Profiles]]", f"[{name}]", "PresentationContexts = Contexts"]
    path = directory / f"{name}.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class Sent:
    """What storescu said about one file."""

    path: Path
    status: str  # "Success", "Warning ...", "0111 ...", "no context", "failed: ..."


_SENDING = re.compile(r"^I: Sending file: (.*)$")
_RESPONSE = re.compile(r"^I: Received Store Response \((.*)\)$")


def parse_storescu_log(text: str) -> dict[Path, str]:
    """File -> the outcome storescu logged for it (``-v`` output)."""
    outcomes: dict[Path, str] = {}
    current: Path | None = None
    for line in text.splitlines():
        if match := _SENDING.match(line):
            current = Path(match.group(1))
            outcomes[current] = "not answered"
        elif current is not None and (match := _RESPONSE.match(line)):
            outcomes[current] = match.group(1)
        elif current is not None and line.startswith("E: No presentation context"):
            outcomes[current] = "no context"
        elif (
            current is not None
            and line.startswith("E: Store Failed")
            and outcomes[current] == "not answered"
        ):
            outcomes[current] = "failed"
    return outcomes


def storescu(
    port: int,
    files: Sequence[Sendable],
    work: Path,
    *,
    associations: int = 4,
    calling: str = "STORESCU",
    extra: Sequence[str] = (),
) -> dict[Path, str]:
    """Send ``files`` with storescu over ``associations`` concurrent associations (a process
    each, each file in its own transfer syntax); the outcome per file."""
    work.mkdir(parents=True, exist_ok=True)
    chunks = [list(files[i::associations]) for i in range(associations)]
    processes = []
    for i, chunk in enumerate(chunks):
        if not chunk:
            continue
        profile = storescu_profile(chunk, work, f"Chunk{i}")
        log = (work / f"chunk{i}.log").open("w")
        processes.append(
            (
                subprocess.Popen(
                    [
                        "storescu",
                        "-v",
                        "-nh",
                        "-aet",
                        calling,
                        "-aec",
                        "LIGHTBOX",
                        "-xf",
                        str(profile),
                        f"Chunk{i}",
                        *extra,
                        "127.0.0.1",
                        str(port),
                        *(str(f.path) for f in chunk),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
    outcomes: dict[Path, str] = {}
    for process, log in processes:
        process.wait(timeout=600)
        log.close()
        outcomes.update(parse_storescu_log(Path(log.name).read_text()))
    return outcomes


@contextmanager
def storescp(port: int, directory: Path) -> Iterator[subprocess.Popen[bytes]]:
    """DCMTK's storescp keeping every data set bit for bit (``+B``) under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        ["storescp", "+B", "+xa", "+uf", "-od", str(directory), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            assert process.poll() is None, "storescp exited"
            assert time.monotonic() < deadline, "storescp did not start"
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0

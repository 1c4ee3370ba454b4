"""C-FIND latency at study level, Lightbox beside Orthanc in one run (issue 21's C-FIND target).

    bench/run.py dimse find --dataset DIR --target lightbox=AET@127.0.0.1:11112 \
        [--target orthanc=ORTHANC@127.0.0.1:4242] [--requests 200] [--seed 7]

The queries are the study-level shapes of the shared harness's QIDO mix (``load.py``'s
``build_qido_queries``: patient ID, patient name prefix, 30-day date range, modality + 90-day
range, accession, study UID), each turned into a Study Root STUDY-level identifier asking for the
usual study-list keys. One association per target, queries one after another (the target is
latency at one association), every answer's count checked against the dataset's manifest. The
client sets TCP_NODELAY, as DCMTK's tools do by default: with Nagle's algorithm on, pynetdicom as
a client waits for a delayed ACK (40 ms) inside every request, whatever the server
(app/dimse/sockets.py).

pynetdicom as a client spends ~1.6 ms of CPU taking in each Pending response (measured with
Lightbox's server at ~0.4 ms), so on queries with hundreds of matches the latency it measures is
its own. ``--client wire`` (the default) measures with :class:`WireClient` instead: the same
association, requests and count checks, written on the socket with the upper-layer codec of
``tests/dimse/raw.py`` and ``app/dimse/upper_layer.py``, which costs a few microseconds per
response; ``--client pynetdicom`` keeps the library's SCU. ``--server-pid NAME=PID`` adds the
server's CPU time per response (utime + stime of the process over the run), which is the
server's cost whatever the client.
"""

import argparse
import importlib.util
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: app, tests

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from app.dimse.sockets import NO_DELAY
from app.dimse.upper_layer import P_DATA, decode_command, pdvs, unsigned
from tests.dimse.raw import (
    A_RELEASE_RQ,
    associate_rq,
    c_find_command,
    implicit_le,
    p_data,
    read_pdu,
)

SHARED = Path(__file__).resolve().parents[3] / "shared"
STUDY_SHAPES = {
    "study_by_patient_id",
    "study_by_patient_name_wildcard",
    "study_by_date_range_30d",
    "study_by_modality_and_date_90d",
    "study_by_accession",
    "study_by_uid",
}
KEYWORDS = {
    "PatientID": "PatientID",
    "PatientName": "PatientName",
    "StudyDate": "StudyDate",
    "ModalitiesInStudy": "ModalitiesInStudy",
    "AccessionNumber": "AccessionNumber",
    "StudyInstanceUID": "StudyInstanceUID",
}
RETURN_KEYS = ("StudyDescription", "StudyTime", "NumberOfStudyRelatedInstances", "PatientBirthDate")


def load_harness() -> Any:
    spec = importlib.util.spec_from_file_location("load", SHARED / "bench" / "load.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["load"] = module
    spec.loader.exec_module(module)
    return module


def identifier(params: list[tuple[str, str]]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber"):
        setattr(ds, keyword, "")
    ds.ModalitiesInStudy = ""
    for keyword in RETURN_KEYS:
        setattr(ds, keyword, "")
    for key, value in params:
        setattr(ds, KEYWORDS[key], value)
    return ds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/PID/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


STUDY_FIND = str(StudyRootQueryRetrieveInformationModelFind)
IMPLICIT = "1.2.840.10008.1.2"


class WireClient:
    """A Study Root C-FIND requestor on a plain socket (module docstring): one association,
    Implicit VR Little Endian, no PDU limit, Nagle off."""

    def __init__(self, host: str, port: int, called: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(associate_rq("BENCHFIND", called, STUDY_FIND, IMPLICIT, max_pdu=0))
        kind, body = read_pdu(self.sock)
        if kind != 0x02 or not _context_accepted(body):
            raise SystemExit(f"association to {called}@{host}:{port} not accepted")
        self.message_id = 0

    def find(self, ds: Dataset) -> int:
        """Send one C-FIND; the number of Pending responses before the final Success."""
        self.message_id += 1
        self.sock.sendall(
            p_data(c_find_command(STUDY_FIND, self.message_id), command=True, last=True)
            + p_data(implicit_le(ds), command=False, last=True)
        )
        matches = 0
        command = bytearray()
        while True:
            kind, body = read_pdu(self.sock)
            if kind != P_DATA:
                raise SystemExit(f"C-FIND answered with PDU type 0x{kind:02X}")
            for _context, control, value in pdvs(body):
                if not control & 0x01:
                    continue  # the match's identifier: counted by its command
                command += value
                if not control & 0x02:
                    continue
                status = unsigned(decode_command(command)[0x0900])
                command = bytearray()
                if status in (0xFF00, 0xFF01):
                    matches += 1
                elif status == 0x0000:
                    return matches
                else:
                    raise SystemExit(f"C-FIND failed: status 0x{status:04X}")

    def release(self) -> None:
        self.sock.sendall(A_RELEASE_RQ)
        read_pdu(self.sock)
        self.sock.close()


def _context_accepted(body: bytes) -> bool:
    """Whether an A-ASSOCIATE-AC's (PS3.8 §9.3.3) presentation context item says accepted."""
    offset = 68  # protocol version, reserved, AE titles, reserved
    while offset + 4 <= len(body):
        kind, length = body[offset], int.from_bytes(body[offset + 2 : offset + 4], "big")
        if kind == 0x21:
            return body[offset + 6] == 0  # context ID, reserved, then the result
        offset += 4 + length
    return False


@contextmanager
def connect(client: str, host: str, port: int, title: str) -> Iterator[Any]:
    """A function running one C-FIND and returning its match count, on one association."""
    if client == "wire":
        wire = WireClient(host, port, title)
        try:
            yield wire.find
        finally:
            wire.release()
        return
    ae = AE(ae_title="BENCHFIND")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.dimse_timeout = ae.network_timeout = 120
    assoc = ae.associate(host, port, ae_title=title, max_pdu=0, evt_handlers=[NO_DELAY])
    if not assoc.is_established:
        raise SystemExit(f"association to {title}@{host}:{port} not established")

    def find(ds: Dataset) -> int:
        return sum(
            1
            for status, _ in assoc.send_c_find(ds, StudyRootQueryRetrieveInformationModelFind)
            if status and status.Status in (0xFF00, 0xFF01)
        )

    try:
        yield find
    finally:
        assoc.release()


def run_target(
    address: str,
    queries: list[tuple[str, list[tuple[str, str]], int]],
    server_pid: int | None = None,
    client: str = "wire",
) -> dict[str, Any]:
    title, _, hostport = address.partition("@")
    host, _, port = hostport.rpartition(":")
    latencies: dict[str, list[float]] = {}
    wrong = 0
    responses = 0
    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    with connect(client, host, int(port), title) as find:
        for shape, params, expected in queries:
            request = identifier(params)
            started = time.perf_counter()
            matches = find(request)
            latencies.setdefault(shape, []).append((time.perf_counter() - started) * 1000)
            wrong += matches != expected
            responses += matches + 1
    server_cpu = cpu_seconds(server_pid) - cpu_before if server_pid else None
    every = [v for values in latencies.values() for v in values]
    extra = {}
    if server_cpu is not None:
        extra["server_cpu_ms_per_response"] = round(server_cpu * 1000 / max(1, responses), 3)
    return {
        **extra,
        "requests": len(every),
        "wrong_counts": wrong,
        "p50_ms": round(percentile(every, 0.5), 2),
        "p95_ms": round(percentile(every, 0.95), 2),
        "mean_ms": round(statistics.fmean(every), 2),
        "by_shape_p95_ms": {k: round(percentile(v, 0.95), 2) for k, v in sorted(latencies.items())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--target", action="append", required=True, help="NAME=AET@HOST:PORT")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--server-pid", action="append", default=[], help="NAME=PID: report its CPU per response"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--client", choices=("wire", "pynetdicom"), default="wire", help="the requestor"
    )
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    harness = load_harness()
    dataset = harness.DatasetIndex(args.dataset)
    queries = [
        (shape, params, expected)
        for shape, _path, params, expected, _required in harness.build_qido_queries(
            dataset, args.requests * 4, args.seed
        )
        if shape in STUDY_SHAPES
    ][: args.requests]
    pids = {name: int(pid) for name, _, pid in (spec.partition("=") for spec in args.server_pid)}
    results = {}
    for spec in args.target:
        name, _, address = spec.partition("=")
        # warm-up: caches, statement preparation
        run_target(address, queries[:10], client=args.client)
        results[name] = run_target(address, queries, pids.get(name), args.client)
        print(name, json.dumps(results[name]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

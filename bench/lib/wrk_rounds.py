"""The bookkeeping of wrk rounds (``perf_all.sh``'s overhead and latency sections,
``simultaneous.sh``): which paths a round requests, what CPU it cost, how on/off rounds compare.

    wrk_rounds.py paths frames|qido DATA_DIR [--prefix /dicom-web]
    wrk_rounds.py cpu PATTERN [PATTERN ...]
    wrk_rounds.py cost WRK_LINE BEFORE AFTER [--split S] [--prefix P]
    wrk_rounds.py split LABEL ROUNDS_FILE

``paths``: the request paths, one per line, under the DICOMweb root unless a prefix is given.
frames: frame 1 of the first 300 of wado60's 512x512 16-bit instances; qido: 400 searches of
index100k (shuffled with a fixed seed), in turn by PatientID, by StudyInstanceUID, a study's
series and a series' instances.

``cpu``: CPU seconds (user + system) used so far by the processes whose command line contains
each pattern, and by all their descendants, one number per pattern. Descendants count because
uvicorn's workers are spawned processes whose command line does not repeat the server's. Read
it before and after a round and divide the difference by the requests served to get CPU per
request; a process that exits during the round takes its time with it. The pattern ``:steal``
stands for the CPU time the hypervisor gave to other machines while this one wanted it (all
CPUs, from ``/proc/stat``): a round during which it grows ran on a slower machine.

``cost``: one wrk round's JSON line (``wrk_paths.lua``) completed with what it cost. BEFORE and
AFTER are what ``cpu SERVER [postgres: [:steal]]`` printed around the 10 s round; their numbers,
in that order, become ``server_ms_per_req``, ``pg_ms_per_req`` and ``steal_pct``. ``--split``
adds how the server's workers shared the connections; ``--prefix`` is put before the JSON.

``split``: on/off comparison of wrk rounds that had the same worker split. ROUNDS_FILE holds one
line per round, ``on {json}`` or ``off {json}``. When uvicorn's workers accepted from one socket,
a round could find all its connections on one worker and serve a quarter fewer requests whatever
the mode, so only rounds of the same split compare (``lightbox serve`` now balances them). Prints,
per split both sides had, the medians of p50, p95 and req/s, the on/off difference, and the
median share of CPU time the hypervisor took on each side (``steal_pct``).
"""

import argparse
import json
import os
import random
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")
#: the length of a wrk round (``wrk -d10s``)
ROUND_SECONDS = 10


# --- paths ---


def print_paths(kind: str, data: str, prefix: str) -> None:
    if kind == "frames":
        with open(f"{data}/wado60/instances.jsonl") as lines:
            for n, line in enumerate(lines):
                if n == 300:
                    break
                d = json.loads(line)
                print(
                    f"{prefix}/studies/{d['study_uid']}/series/{d['series_uid']}"
                    f"/instances/{d['sop_uid']}/frames/1"
                )
        return
    with open(f"{data}/index100k/instances.jsonl") as lines:
        rows = [json.loads(line) for line in lines]
    random.Random(5).shuffle(rows)
    for n, d in enumerate(rows[:400]):
        searches = [
            f"/studies?PatientID={d['patient_id']}",
            f"/studies?StudyInstanceUID={d['study_uid']}",
            f"/studies/{d['study_uid']}/series",
            f"/studies/{d['study_uid']}/series/{d['series_uid']}/instances",
        ]
        print(prefix + searches[n % 4])


# --- cpu ---


def _stat(pid: int | str) -> tuple[int, float]:
    """``(parent pid, user + system CPU seconds)`` of one process, from ``/proc/PID/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # after "pid (comm) ": state ppid ... utime stime (fields 14 and 15 of stat)
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by one process of this machine."""
    return _stat(pid)[1]


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command line, CPU seconds)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\x00", b" ").decode("latin-1")
            parent, cpu = _stat(entry.name)
        except OSError:  # exited meanwhile
            continue
        found[int(entry.name)] = (parent, cmdline, cpu)
    return found


def cpu_seconds(pattern: str, processes: dict[int, tuple[int, str, float]]) -> float:
    me = os.getpid()
    chosen = {pid for pid, (_, cmd, _) in processes.items() if pattern in cmd and pid != me}
    grew = True
    while grew:  # add children until none is left out
        more = {pid for pid, (ppid, _, _) in processes.items() if ppid in chosen} - chosen
        chosen |= more
        grew = bool(more)
    return sum(processes[pid][2] for pid in chosen)


def steal_seconds() -> float:
    """CPU seconds stolen from this machine by its hypervisor so far (all CPUs)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()  # "cpu user nice system idle iowait irq softirq steal"
    return int(fields[8]) / TICKS


def print_cpu(patterns: list[str]) -> None:
    processes = _processes()
    print(
        " ".join(
            f"{steal_seconds() if p == ':steal' else cpu_seconds(p, processes):.2f}"
            for p in patterns
        )
    )


# --- cost ---


def round_cost(line: str, before: str, after: str, split: str | None) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(line)
    pairs = zip(after.split(), before.split(), strict=True)
    used = [float(a) - float(b) for a, b in pairs]
    requests = max(result["requests"], 1)
    for key, seconds in zip(("server_ms_per_req", "pg_ms_per_req"), used[:2], strict=False):
        result[key] = round(seconds * 1000 / requests, 3)
    if len(used) > 2:
        result["steal_pct"] = round(used[2] * 100 / (ROUND_SECONDS * (os.cpu_count() or 1)), 1)
    if split is not None:
        result["split"] = split
    return result


# --- split ---


def compare(label: str, lines: list[str]) -> list[str]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        which, _, payload = line.strip().partition(" ")
        if which in ("on", "off") and payload:
            result = json.loads(payload)
            groups[(which, str(result.get("split", "?")))].append(result)
    out = []
    for split in sorted({split for _, split in groups}):
        on, off = groups.get(("on", split), []), groups.get(("off", split), [])
        if not on or not off:
            out.append(f"{label} split {split}: rounds on {len(on)}, off {len(off)} (no pair)")
            continue
        cells = []
        for key, name in (("p50_ms", "p50"), ("p95_ms", "p95"), ("rps", "req/s")):
            a = statistics.median(r[key] for r in on)
            b = statistics.median(r[key] for r in off)
            cells.append(f"{name} {a:g} vs {b:g} ({a / b - 1:+.0%})")
        if all("steal_pct" in r for r in on + off):  # a slowed machine shows here
            a = statistics.median(r["steal_pct"] for r in on)
            b = statistics.median(r["steal_pct"] for r in off)
            cells.append(f"CPU stolen {a:g}% vs {b:g}%")
        out.append(f"{label} split {split} ({len(on)} on, {len(off)} off): " + ", ".join(cells))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    paths = sub.add_parser("paths", help="the request paths of a wrk round, one per line")
    paths.add_argument("kind", choices=["frames", "qido"])
    paths.add_argument("data", help="the directory holding wado60/ and index100k/")
    paths.add_argument("--prefix", default="", help="put before every path, e.g. /dicom-web")
    cpu = sub.add_parser("cpu", help="CPU seconds so far of the processes matching each pattern")
    cpu.add_argument("patterns", nargs="+", help="command-line substring, or :steal")
    cost = sub.add_parser("cost", help="a wrk round's JSON line completed with its CPU cost")
    cost.add_argument("line", help="the JSON line of wrk_paths.lua")
    cost.add_argument("before", help="what `cpu` printed before the round")
    cost.add_argument("after", help="what `cpu` printed after the round")
    cost.add_argument("--split", help="how the workers shared the connections, e.g. 2/2")
    cost.add_argument("--prefix", default="")
    split = sub.add_parser("split", help="on/off medians of rounds with the same worker split")
    split.add_argument("label")
    split.add_argument("rounds", help="file of 'on {json}' / 'off {json}' lines")
    args = parser.parse_args(argv)
    if args.command == "paths":
        print_paths(args.kind, args.data, args.prefix)
    elif args.command == "cpu":
        print_cpu(args.patterns)
    elif args.command == "cost":
        print(args.prefix + json.dumps(round_cost(args.line, args.before, args.after, args.split)))
    else:
        with open(args.rounds) as rounds:
            print("\n".join(compare(args.label, rounds.readlines())))


if __name__ == "__main__":
    main()
